"""The WSGI application: the Open Inference Protocol (v2 REST), Slipway's numpy endpoint, health,
/metrics and /v1/monitoring, found through one route table (``ServingApp.add_route``).

Open Inference Protocol: ``/v2``, ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/<name>[/versions/<version>]`` (metadata), ``.../ready`` and ``.../infer``
(serving/oip.py). ``/v1/predict`` takes ``{"inputs": ...}`` JSON, an ``.npy`` array or an ``.npz``
archive and answers in kind: a numpy user can post ``np.save`` output with curl, no client library.
Both prediction paths share the limits, validation, monitoring and metrics.

Every response names the model, version, artifact sha256 and release; predictions also carry
a prediction id (``X-Prediction-Id``: the protocol request's ``id`` when it is a short safe
string, else a fresh UUID). Errors are ``{"error": "..."}`` with a 4xx status that says why.
/v1/monitoring reports what serving/watch.py keeps: input summaries, abnormal outputs, crashes
and the recent predictions (``?after=<seq>`` for those not collected yet).
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST

from serving import codec, oip
from serving.config import ServingConfig
from serving.limits import LimitExceeded
from serving.metrics import ServingMetrics
from serving.model import InferenceError, InputError, ModelLoadError, ModelRunner
from serving.shadow import Copy, ShadowCopier
from serving.watch import Profile, Watcher

log = logging.getLogger("serving")

StartResponse = Callable[..., Any]
Response = tuple[HTTPStatus, list[tuple[str, str]], bytes]
Handler = Callable[[dict[str, Any], re.Match[str]], Response]
PREDICT_PATH = "/v1/predict"
MONITORING_PATH = "/v1/monitoring"
AFTER_RESPONSE = "slipway.after_response"  # environ key: what to run once the response is sent
SHADOW_PATH = "/v1/shadow"
MODEL_PATH = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
PLATFORM = "onnxruntime_onnx"


class RequestFailed(Exception):
    def __init__(self, status: HTTPStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _failure(error: Exception) -> RequestFailed:
    """The HTTP answer to an error raised while reading or running a request (one place for the rule)."""
    if isinstance(error, RequestFailed):
        return error
    if isinstance(error, LimitExceeded):
        return RequestFailed(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", str(error))
    if isinstance(error, codec.UnsupportedMediaType):
        return RequestFailed(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", str(error))
    if isinstance(error, InputError):
        return RequestFailed(HTTPStatus.BAD_REQUEST, "bad_input", str(error))
    if isinstance(error, InferenceError):
        return RequestFailed(HTTPStatus.UNPROCESSABLE_ENTITY, "inference_failed", str(error))
    raise error


class _Answer(list[bytes]):
    """A response body that runs ``after`` once the server has sent it (a WSGI server calls close()
    then), so work for later (a shadow copy) starts only when the caller has its answer."""

    def __init__(self, body: bytes, after: Callable[[], None] | None) -> None:
        super().__init__([body])
        self._after = after

    def close(self) -> None:
        if self._after is not None:
            self._after()


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class ServingApp:
    """A WSGI callable serving one model; load_model() must run before it answers predictions."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.metrics = ServingMetrics(config.model_name, config.version)
        self._runner: ModelRunner | None = None
        self.watcher = Watcher(None, config.prediction_log)
        self._load_error: str | None = None
        self.shadow: ShadowCopier | None = None
        self._identity = [
            ("X-Model-Name", config.model_name),
            ("X-Model-Version", config.version),
            ("X-Model-Sha256", config.sha256),
            ("X-Release-Id", config.release_id),
        ]
        self.routes: list[Route] = []
        self.add_route("GET", "/healthz", lambda _e, _m: self._json(HTTPStatus.OK, {"status": "alive"}))
        self.add_route("GET", "/readyz", self._readyz)
        self.add_route("GET", "/metrics", self._metrics)
        self.add_route("GET", MONITORING_PATH, self._monitoring)
        self.add_route("GET", SHADOW_PATH, self._shadow_report)
        self.add_route("PUT", SHADOW_PATH, self._set_shadow)
        self.add_route("DELETE", SHADOW_PATH, self._clear_shadow)
        self.add_route("POST", PREDICT_PATH, lambda environ, _m: self._prediction(environ, self._predict_v1))
        self.add_route("GET", "/v2", self._server_metadata)
        self.add_route("GET", "/v2/health/live", lambda _e, _m: self._json(HTTPStatus.OK, {"live": True}))
        self.add_route("GET", "/v2/health/ready", self._server_ready)
        self.add_route("GET", MODEL_PATH, self._model_metadata)
        self.add_route("GET", MODEL_PATH + "/ready", self._model_ready)
        self.add_route("POST", MODEL_PATH + "/infer",
                       lambda environ, match: self._prediction(environ, lambda e, pid: self._infer(e, pid, match)))

    def add_route(self, method: str, path_pattern: str, handler: Handler) -> None:
        """Answer ``method`` on paths matching ``path_pattern`` (a regular expression, whole path)."""
        self.routes.append(Route(method, re.compile(path_pattern), handler))

    def load_model(self) -> None:
        """Load the model and run one warm-up inference; a failure is kept and shown by /readyz."""
        try:
            if self.config.profile is not None:
                self.watcher = Watcher(self._load_profile(self.config.profile), self.config.prediction_log)
            runner = ModelRunner(self.config.model, self.config.sha256, self.config.intra_op_threads,
                                 self.config.workdir)
            try:
                runner.warm_up()
            except (InputError, InferenceError) as error:
                raise ModelLoadError(f"warm-up inference failed: {error}") from error
        except ModelLoadError as error:
            self._load_error = str(error)
            log.error("model not loaded: %s", error)
            return
        self._runner = runner
        if self.config.shadow_url and self.config.shadow_share > 0:
            self._start_shadow(self.config.shadow_url, self.config.shadow_share, self.config.shadow_task)
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
        wanted = "GET" if method == "HEAD" else method
        # The first route of the method whose pattern matches answers (no other pattern is tried).
        chosen = next(((route, match) for route in self.routes
                       if route.method == wanted and (match := route.pattern.fullmatch(path))), None)
        matches = [] if chosen else [route for route in self.routes if route.pattern.fullmatch(path)]
        if chosen:
            route, match = chosen
            status, headers, body = route.handler(environ, match)
        elif matches:
            allowed = ", ".join(sorted({route.method for route in matches}))
            status, headers, body = self._error(HTTPStatus.METHOD_NOT_ALLOWED,
                                                f"{path} accepts {allowed}, not {method}")
            headers.append(("Allow", allowed))
        else:
            status, headers, body = self._error(HTTPStatus.NOT_FOUND, f"no endpoint at {path}")
        headers += [*self._identity, ("Content-Length", str(len(body)))]
        start_response(f"{status.value} {status.phrase}", headers)
        return _Answer(b"" if method == "HEAD" else body, environ.get(AFTER_RESPONSE))

    def _json(self, status: HTTPStatus, document: Mapping[str, object]) -> Response:
        return status, [("Content-Type", codec.JSON)], codec.encode_json(document)

    def _error(self, status: HTTPStatus, message: str) -> Response:
        return self._json(status, {"error": message})

    def _readyz(self, _environ: dict[str, Any], _match: re.Match[str]) -> Response:
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

    def _metrics(self, _environ: dict[str, Any], _match: re.Match[str]) -> Response:
        return HTTPStatus.OK, [("Content-Type", CONTENT_TYPE_LATEST)], self.metrics.render()

    def _monitoring(self, environ: dict[str, Any], _match: re.Match[str]) -> Response:
        raw = parse_qs(environ.get("QUERY_STRING", "")).get("after", ["0"])[0]
        if not raw.isdigit():
            return self._error(HTTPStatus.BAD_REQUEST, f"after must be a sequence number, not {raw!r}")
        return self._json(HTTPStatus.OK, self.watcher.report(int(raw)))

    def _start_shadow(self, url: str, share: float, task: str) -> None:
        previous = self.shadow
        task = task or (self.watcher.profile.task if self.watcher.profile else "")
        self.shadow = ShadowCopier(url, self.config.model_name, share, task)
        if previous is not None:
            previous.close()

    def _authorized(self, environ: dict[str, Any]) -> Response | None:
        """None when the request carries the control token; else the refusal."""
        token = self.config.control_token
        given = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not token:
            return self._error(HTTPStatus.FORBIDDEN, "this server takes no control requests (no control token)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return self._error(HTTPStatus.UNAUTHORIZED, "a control request needs the server's bearer token")
        return None

    def _set_shadow(self, environ: dict[str, Any], _match: re.Match[str]) -> Response:
        """Start copying (or change where to and how much): {"url", "share", "task"}."""
        refused = self._authorized(environ)
        if refused is not None:
            return refused
        try:
            document = json.loads(environ["wsgi.input"].read(min(int(environ.get("CONTENT_LENGTH") or 0), 4096)))
            url, share, task = document["url"], float(document["share"]), str(document.get("task", ""))
        except (ValueError, KeyError, TypeError):
            return self._error(HTTPStatus.BAD_REQUEST, 'send {"url": "http://...", "share": 0..1, "task": "..."}')
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not 0 < share <= 1:
            return self._error(HTTPStatus.BAD_REQUEST, "url must be an http(s) URL and share in (0, 1]")
        if self._runner is None:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the model is not loaded")
        self._start_shadow(url, share, task)
        return self._shadow_report(environ, _match)

    def _clear_shadow(self, environ: dict[str, Any], match: re.Match[str]) -> Response:
        """Stop copying; answers the last report."""
        refused = self._authorized(environ)
        if refused is not None:
            return refused
        answer = self._shadow_report(environ, match)
        if self.shadow is not None:
            self.shadow.close()
            self.shadow = None
        return answer

    def _shadow_report(self, _environ: dict[str, Any], _match: re.Match[str]) -> Response:
        if self.shadow is None:
            return self._error(HTTPStatus.NOT_FOUND, "this server copies no requests to a shadow release")
        return self._json(HTTPStatus.OK, self.shadow.report())

    # --- Open Inference Protocol: server and model status -------------------------------------------

    def _server_metadata(self, _environ: dict[str, Any], _match: re.Match[str]) -> Response:
        return self._json(HTTPStatus.OK, {"name": "slipway-serving", "version": "1",
                                          "extensions": list(oip.EXTENSIONS)})

    def _server_ready(self, _environ: dict[str, Any], _match: re.Match[str]) -> Response:
        ready = self._runner is not None
        return self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, {"ready": ready})

    def _model(self, match: re.Match[str]) -> ModelRunner:
        """The runner for the model named in the path, or the protocol's 404 / 503."""
        name, version = match["model"], match["version"]
        if name != self.config.model_name:
            raise RequestFailed(HTTPStatus.NOT_FOUND, "unknown_model",
                                f"unknown model {name!r}; this server serves {self.config.model_name!r}")
        if version is not None and version != self.config.version:
            raise RequestFailed(HTTPStatus.NOT_FOUND, "unknown_model",
                                f"model {name!r} has no version {version!r}; it serves {self.config.version!r}")
        if self._runner is None:
            raise RequestFailed(HTTPStatus.SERVICE_UNAVAILABLE, "not_ready",
                                self._load_error or "the model is still loading")
        return self._runner

    def _model_metadata(self, _environ: dict[str, Any], match: re.Match[str]) -> Response:
        try:
            runner = self._model(match)
        except RequestFailed as failure:
            return self._error(failure.status, str(failure))
        return self._json(HTTPStatus.OK, {
            "name": self.config.model_name,
            "versions": [self.config.version],
            "platform": PLATFORM,
            "inputs": [oip.tensor_metadata(spec) for spec in runner.inputs],
            "outputs": [oip.tensor_metadata(spec) for spec in runner.outputs],
        })

    def _model_ready(self, _environ: dict[str, Any], match: re.Match[str]) -> Response:
        try:
            self._model(match)
        except RequestFailed as failure:
            return self._error(failure.status, str(failure))
        return self._json(HTTPStatus.OK, {"name": self.config.model_name, "ready": True})

    # --- predictions ---------------------------------------------------------------------------------

    def _prediction(self, environ: dict[str, Any],
                    work: Callable[[dict[str, Any], str], tuple[str, list[tuple[str, str]], bytes]]) -> Response:
        """Run one prediction request: timing, error answers, metrics and the prediction id header."""
        started = environ["slipway.started"] = time.perf_counter()
        prediction_id = str(uuid.uuid4())
        reason = None
        try:
            try:
                prediction_id, headers, body = work(environ, prediction_id)
                status = HTTPStatus.OK
            except Exception as error:
                failure = _failure(error)
                reason = failure.reason
                status, headers, body = self._error(failure.status, str(failure))
        except Exception:
            log.exception("prediction %s failed", prediction_id)
            self.watcher.crashed()
            reason = "internal"
            status, headers, body = self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")
        self._discard_unread(environ)
        seconds = time.perf_counter() - started
        self.metrics.observe_request(status.value, seconds, reason)
        headers += [("X-Prediction-Id", prediction_id), ("Server-Timing", f"app;dur={seconds * 1000:.3f}")]
        return status, headers, body

    def _discard_unread(self, environ: dict[str, Any]) -> None:
        """Read and drop what is left of a refused body (1 MiB at a time, up to 4x the body limit), so
        a keep-alive client can send its next request on the same connection; gunicorn itself only
        drains 64 KiB and closes the connection after a larger unread body."""
        budget = 4 * self.limits.max_body_bytes
        while budget > 0 and (chunk := environ["wsgi.input"].read(min(budget, 1 << 20))):
            budget -= len(chunk)

    def _ready_runner(self) -> ModelRunner:
        if self._runner is None:
            raise RequestFailed(HTTPStatus.SERVICE_UNAVAILABLE, "not_ready",
                                self._load_error or "the model is still loading")
        return self._runner

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise codec.UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send the body as is")
        limit = self.limits.max_body_bytes
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit:
            raise LimitExceeded(f"a body of {declared} bytes is over the limit of {limit} bytes")
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise LimitExceeded(f"the body is over the limit of {limit} bytes")
        return body

    def _run(self, runner: ModelRunner, arrays: dict[str, np.ndarray], prediction_id: str) -> dict[str, np.ndarray]:
        self.limits.check_arrays(arrays)
        outputs = runner.run(arrays)
        rows = runner.batch_size(arrays)
        self.metrics.batch.observe(rows)
        self.metrics.observe_abnormal(self.watcher.observe(prediction_id, arrays, outputs, rows))
        return outputs

    def _predict_v1(self, environ: dict[str, Any], prediction_id: str) -> tuple[str, list[tuple[str, str]], bytes]:
        runner = self._ready_runner()
        request = codec.decode(environ.get("CONTENT_TYPE", ""), self._read_body(environ), self.limits,
                               len(runner.inputs))
        outputs = self._run(runner, runner.prepare(request.inputs), prediction_id)
        if request.binary:
            content_type, body = codec.encode_binary(outputs)
        else:
            document = {"outputs": codec.outputs_to_lists(outputs), "prediction_id": prediction_id}
            content_type, body = codec.JSON, codec.encode_json(document)
        return prediction_id, [("Content-Type", content_type)], body

    def _infer(self, environ: dict[str, Any], prediction_id: str,
               match: re.Match[str]) -> tuple[str, list[tuple[str, str]], bytes]:
        runner = self._model(match)
        body = self._read_body(environ)
        header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        json_length = int(header_length) if header_length and header_length.isdigit() else len(body)
        self.limits.check_body(json_length, json_body=True)
        document, binary = oip.split_body(body, header_length)
        request = oip.parse_infer(document, binary, runner.inputs, runner.output_names, self.limits)
        if oip.SAFE_ID.fullmatch(request.id):
            prediction_id = request.id
        outputs = self._run(runner, runner.prepare(request.inputs), prediction_id)
        chosen = {name: outputs[name] for name in (request.outputs or runner.output_names)}
        headers, answer = oip.encode_response(self.config.model_name, self.config.version,
                                              request.id or prediction_id, chosen, request.binary_outputs)
        if self.shadow is not None and "HTTP_X_SHADOW_OF" not in environ:
            forwarded = {"Content-Type": environ.get("CONTENT_TYPE") or codec.JSON}
            if header_length:
                forwarded[oip.HEADER_LENGTH] = header_length
            copy = Copy(prediction_id, body, forwarded, outputs, time.perf_counter() - environ["slipway.started"])
            environ[AFTER_RESPONSE] = functools.partial(self.shadow.offer, copy)  # once the caller has its answer
        return prediction_id, headers, answer
