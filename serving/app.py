"""The WSGI application: /v1/predict, /healthz, /readyz, /metrics and /v1/monitoring.

Every response names the model, version, artifact sha256 and release; predictions also carry
a prediction id. A request the model cannot take gets a 4xx JSON body that says why.
/v1/monitoring reports what serving/watch.py keeps: input summaries, abnormal outputs, crashes
and the recent predictions (``?after=<seq>`` for those not collected yet).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST

from serving import codec
from serving.config import ServingConfig
from serving.metrics import ServingMetrics
from serving.model import InferenceError, InputError, ModelLoadError, ModelRunner
from serving.watch import Profile, Watcher

log = logging.getLogger("serving")

StartResponse = Callable[..., Any]
PREDICT_PATH = "/v1/predict"
MONITORING_PATH = "/v1/monitoring"


class RequestFailed(Exception):
    def __init__(self, status: HTTPStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ServingApp:
    """A WSGI callable serving one model; load_model() must run before it answers predictions."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.metrics = ServingMetrics(config.model_name, config.version)
        self._runner: ModelRunner | None = None
        self.watcher = Watcher(None, config.prediction_log)
        self._load_error: str | None = None
        self._identity = [
            ("X-Model-Name", config.model_name),
            ("X-Model-Version", config.version),
            ("X-Model-Sha256", config.sha256),
            ("X-Release-Id", config.release_id),
        ]
        self._routes = {
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
            "/metrics": ("GET", self._metrics),
            PREDICT_PATH: ("POST", self._predict),
            MONITORING_PATH: ("GET", self._monitoring),
        }

    def load_model(self) -> None:
        """Load the model and run one warm-up inference; a failure is kept and shown by /readyz."""
        try:
            if self.config.profile is not None:
                self.watcher = Watcher(self._load_profile(self.config.profile), self.config.prediction_log)
            runner = ModelRunner(self.config.model, self.config.sha256, self.config.intra_op_threads)
            try:
                runner.warm_up()
            except (InputError, InferenceError) as error:
                raise ModelLoadError(f"warm-up inference failed: {error}") from error
        except ModelLoadError as error:
            self._load_error = str(error)
            log.error("model not loaded: %s", error)
            return
        self._runner = runner
        self.metrics.set_ready(True)
        log.info("model %s %s ready", self.config.model_name, self.config.version)

    @staticmethod
    def _load_profile(path: Path) -> Profile:
        try:
            return Profile.load(path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelLoadError(f"monitoring profile {path} is unusable: {error}") from error

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_model, name="model-loader", daemon=True)
        thread.start()
        return thread

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        allowed, handler = self._routes.get(path, ("", None))
        if handler is None:
            status, headers, body = self._error(HTTPStatus.NOT_FOUND, f"no endpoint at {path}")
        elif method != allowed and not (method == "HEAD" and allowed == "GET"):
            status, headers, body = self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}, not {method}"
            )
            headers.append(("Allow", allowed))
        else:
            status, headers, body = handler(environ)
        headers += [*self._identity, ("Content-Length", str(len(body)))]
        start_response(f"{status.value} {status.phrase}", headers)
        return [b"" if method == "HEAD" else body]

    def _json(self, status: HTTPStatus, document: dict[str, object]) -> tuple[HTTPStatus, list, bytes]:
        return status, [("Content-Type", codec.JSON)], codec.encode_json(document)

    def _error(self, status: HTTPStatus, message: str) -> tuple[HTTPStatus, list, bytes]:
        return self._json(status, {"error": message, "status": status.value})

    def _healthz(self, _environ: dict[str, Any]) -> tuple[HTTPStatus, list, bytes]:
        return self._json(HTTPStatus.OK, {"status": "alive"})

    def _readyz(self, _environ: dict[str, Any]) -> tuple[HTTPStatus, list, bytes]:
        if self._load_error is not None:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "failed", "error": self._load_error})
        if self._runner is None:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "loading"})
        return self._json(
            HTTPStatus.OK,
            {
                "status": "ready",
                "inputs": [spec.describe() for spec in self._runner.inputs],
                "outputs": self._runner.output_names,
            },
        )

    def _metrics(self, _environ: dict[str, Any]) -> tuple[HTTPStatus, list, bytes]:
        return HTTPStatus.OK, [("Content-Type", CONTENT_TYPE_LATEST)], self.metrics.render()

    def _monitoring(self, environ: dict[str, Any]) -> tuple[HTTPStatus, list, bytes]:
        raw = parse_qs(environ.get("QUERY_STRING", "")).get("after", ["0"])[0]
        if not raw.isdigit():
            return self._error(HTTPStatus.BAD_REQUEST, f"after must be a sequence number, not {raw!r}")
        return self._json(HTTPStatus.OK, self.watcher.report(int(raw)))

    def _predict(self, environ: dict[str, Any]) -> tuple[HTTPStatus, list, bytes]:
        started = time.perf_counter()
        prediction_id = str(uuid.uuid4())
        reason = None
        try:
            content_type, body = self._infer(environ, prediction_id)
            status, headers = HTTPStatus.OK, [("Content-Type", content_type)]
        except RequestFailed as failure:
            reason = failure.reason
            status, headers, body = self._json(
                failure.status,
                {
                    "error": str(failure),
                    "status": failure.status.value,
                    "prediction_id": prediction_id,
                },
            )
        except Exception:
            log.exception("prediction %s failed", prediction_id)
            self.watcher.crashed()
            reason = "internal"
            status, headers, body = self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")
        self.metrics.observe_request(status.value, time.perf_counter() - started, reason)
        headers.append(("X-Prediction-Id", prediction_id))
        return status, headers, body

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        limit = self.config.max_body_bytes
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit:
            raise RequestFailed(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_large",
                f"body of {declared} bytes is over the limit of {limit}",
            )
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise RequestFailed(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", f"body is over the limit of {limit} bytes"
            )
        return body

    def _infer(self, environ: dict[str, Any], prediction_id: str) -> tuple[str, bytes]:
        runner = self._runner
        if runner is None:
            raise RequestFailed(
                HTTPStatus.SERVICE_UNAVAILABLE, "not_ready", self._load_error or "the model is still loading"
            )
        body = self._read_body(environ)
        try:
            request = codec.decode(environ.get("CONTENT_TYPE", ""), body)
            arrays = runner.prepare(request.inputs)
            outputs = runner.run(arrays)
        except codec.UnsupportedMediaType as error:
            raise RequestFailed(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", str(error)) from None
        except InputError as error:
            raise RequestFailed(HTTPStatus.BAD_REQUEST, "bad_input", str(error)) from None
        except InferenceError as error:
            raise RequestFailed(HTTPStatus.UNPROCESSABLE_ENTITY, "inference_failed", str(error)) from None
        rows = runner.batch_size(arrays)
        self.metrics.batch.observe(rows)
        self.metrics.observe_abnormal(self.watcher.observe(prediction_id, arrays, outputs, rows))
        if request.binary:
            return codec.encode_binary(outputs)
        document = {"outputs": codec.outputs_to_lists(outputs), "prediction_id": prediction_id}
        return codec.JSON, codec.encode_json(document)
