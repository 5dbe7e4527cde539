"""Command-line and environment configuration of the model server.

Every option can be given as a flag or as an environment variable (``SLIPWAY_<NAME>``);
a flag wins over the variable. Container images set the model identity through ENV.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.limits import Limits

ENV_PREFIX = "SLIPWAY_"


@dataclass(frozen=True)
class ServingConfig:
    model: Path
    port: int = 8000
    host: str = "127.0.0.1"
    model_name: str = "model"
    version: str = "unversioned"
    sha256: str = ""
    release_id: str = ""
    threads: int = 8
    intra_op_threads: int = 0
    max_body_bytes: int = 64 * 1024 * 1024
    max_json_bytes: int = 8 * 1024 * 1024
    max_elements: int = 16 * 1024 * 1024
    max_batch: int = 1024
    workdir: Path | None = None
    shadow_url: str = ""
    shadow_share: float = 0.0
    shadow_task: str = ""
    control_token: str = ""
    graceful_timeout: int = 30
    keepalive: int = 75
    profile: Path | None = None
    prediction_log: int = 10000

    @property
    def limits(self) -> Limits:
        return Limits(self.max_body_bytes, self.max_json_bytes, self.max_elements, self.max_batch)


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve one ONNX model over HTTP (options also read from SLIPWAY_* variables).",
    )

    def option(name: str, kind: Callable[[str], object], help_text: str, default: object = None) -> None:
        variable = _env_name(name)
        parser.add_argument(
            f"--{name}",
            type=kind,
            default=env.get(variable, default),  # argparse converts string defaults with `type`
            help=f"{help_text} [env {variable}]",
        )

    defaults = ServingConfig(model=Path())
    option("model", Path, "path of the .onnx file to serve")
    option("port", int, "TCP port to listen on", defaults.port)
    option("host", str, "address to bind", defaults.host)
    option("model-name", str, "model name reported in headers and metrics", defaults.model_name)
    option("version", str, "version label reported in headers and metrics", defaults.version)
    option("sha256", str, "expected sha256 of the model file; checked at load", defaults.sha256)
    option("release-id", str, "release id reported in the X-Release-Id header", defaults.release_id)
    option("threads", int, "request handler threads", defaults.threads)
    option("intra-op-threads", int, "ONNX Runtime intra-op threads (0: its default)", 0)
    option("max-body-bytes", int, "largest request body accepted (and largest unpacked .npz)", defaults.max_body_bytes)
    option("max-json-bytes", int, "largest JSON request body accepted", defaults.max_json_bytes)
    option("max-elements", int, "most tensor elements in one request, all inputs together", defaults.max_elements)
    option("max-batch", int, "most rows (first dimension) in one request", defaults.max_batch)
    option("shadow-url", str, "model server of the shadow release to copy requests to", "")
    option("shadow-share", float, "share of infer requests copied to the shadow (0 to 1)", 0.0)
    option("shadow-task", str, "how answers are compared: classification, regression or embedding "
           "(default: the profile's task)", "")
    option("control-token", str, "bearer token that may set the shadow at run time (PUT /v1/shadow); "
           "give it through the environment", "")
    option("workdir", _optional_path, "where the private copy of the model is made (default: the temp dir)", None)
    option("graceful-timeout", int, "seconds to finish in-flight requests on SIGTERM", defaults.graceful_timeout)
    option("keepalive", int, "seconds an idle keep-alive connection stays open", defaults.keepalive)
    option("profile", _optional_path, "monitoring profile (profile.json: feature bins, output ranges)", None)
    option("prediction-log", int, "recent predictions kept for Slipway to collect", defaults.prediction_log)
    return parser


def parse_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ServingConfig:
    """Build the configuration from flags, falling back to ``SLIPWAY_*`` environment variables."""
    parser = _parser(os.environ if env is None else env)
    args = parser.parse_args(argv)
    if args.model is None:
        parser.error(f"--model (or {_env_name('model')}) is required")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    if not 0 <= args.shadow_share <= 1:
        parser.error(f"--shadow-share must be between 0 and 1, got {args.shadow_share}")
    if args.shadow_url and not args.shadow_url.startswith(("http://", "https://")):
        parser.error(f"--shadow-url must be an http(s) URL, got {args.shadow_url!r}")
    return ServingConfig(**{key.replace("-", "_"): value for key, value in vars(args).items()})
