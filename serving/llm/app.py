"""The WSGI application of a language model: OpenAI-compatible completions, streamed by server-sent events.

Routes, also under ``/v2/models/<model>`` (the per-model path on an environment's proxy):
``POST /v1/completions``, ``POST /v1/chat/completions`` (when the tokenizer has a chat template),
``GET /v1/models``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/monitoring``. Every answer names
the model, version, artifact sha256 and release in headers, like the other model server.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from serving import codec
from serving.config import ServingConfig
from serving.integrity import file_sha256
from serving.llm import protocol
from serving.llm.bundle import BundleError, unpacked
from serving.llm.decoder import Decoder, DecoderError
from serving.llm.metrics import LanguageMetrics
from serving.llm.text import Detokenizer, Text, TextError
from serving.watch import Watcher

log = logging.getLogger("serving")
StartResponse = Callable[..., Any]
MODEL_PREFIX = re.compile(r"^/v2/models/[a-z0-9][a-z0-9._-]{0,99}(?=/)")
SSE = "text/event-stream"
MAX_TOKENS_LIMIT = 4096
Handled = tuple[HTTPStatus, list, Iterable[bytes]]


class LanguageModelApp:
    """A WSGI callable serving one language-model bundle; load_model() must run before it generates."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.metrics = LanguageMetrics(config.model_name, config.version)
        self.watcher = Watcher(None, 0)
        self.decoder: Decoder | None = None
        self.text: Text | None = None
        self._load_error: str | None = None
        self._identity = [("X-Model-Name", config.model_name), ("X-Model-Version", config.version),
                          ("X-Model-Sha256", config.sha256), ("X-Release-Id", config.release_id)]
        self._routes: dict[str, tuple[str, Callable[[dict], Handled]]] = {
            "/healthz": ("GET", lambda _e: self._json(HTTPStatus.OK, {"status": "alive"})),
            "/readyz": ("GET", self._readyz),
            "/metrics": ("GET", lambda _e: (HTTPStatus.OK, [("Content-Type", CONTENT_TYPE_LATEST)],
                                            [self.metrics.render()])),
            "/v1/monitoring": ("GET", lambda _e: self._json(HTTPStatus.OK, self.watcher.report(0))),
            "/v1/models": ("GET", self._models),
            "/v1/completions": ("POST", lambda e: self._generate(e, chat=False)),
            "/v1/chat/completions": ("POST", lambda e: self._generate(e, chat=True)),
        }

    def load_model(self) -> None:
        """Check the bundle's sha256, unpack it once, load decoder and tokenizer, and generate one token."""
        path = self.config.model
        try:
            if not path.is_file():
                raise DecoderError(f"model file {path} does not exist")
            sha = file_sha256(path)
            if self.config.sha256 and sha != self.config.sha256.lower():
                raise DecoderError(f"model file {path} has sha256 {sha}, expected {self.config.sha256}")
            folder = unpacked(path, Path(tempfile.gettempdir()) / "slipway-llm", sha)
            self.text = Text(folder)
            decoder = Decoder(folder, threads=self.config.intra_op_threads)
            list(decoder.generate(self.text.encode("Hello") or [0], 1))
        except (DecoderError, BundleError, TextError, OSError, ValueError) as error:
            self._load_error = str(error)
            log.error("language model not loaded: %s", error)
            return
        self.decoder = decoder
        self.metrics.set_ready(True)
        log.info("language model %s %s ready", self.config.model_name, self.config.version)

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_model, name="model-loader", daemon=True)
        thread.start()
        return thread

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = MODEL_PREFIX.sub("", environ.get("PATH_INFO", ""), count=1)
        allowed, handler = self._routes.get(path, ("", None))
        if handler is None:
            status, headers, body = self._error(HTTPStatus.NOT_FOUND, f"no endpoint at {path}", "not_found")
        elif method != allowed and not (method == "HEAD" and allowed == "GET"):
            status, headers, body = self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}, not "
                                                f"{method}", "method_not_allowed")
            headers.append(("Allow", allowed))
        else:
            status, headers, body = handler(environ)
        if isinstance(body, list):
            headers.append(("Content-Length", str(sum(len(part) for part in body))))
        start_response(f"{status.value} {status.phrase}", headers + self._identity)
        return [b""] if method == "HEAD" else body

    def _json(self, status: HTTPStatus, document: dict) -> Handled:
        return status, [("Content-Type", codec.JSON)], [codec.encode_json(document)]

    def _error(self, status: HTTPStatus, message: str, kind: str, param: str | None = None) -> Handled:
        return self._json(status, protocol.error_document(message, kind, param))

    def _readyz(self, _environ: dict) -> Handled:
        if self._load_error is not None:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "failed", "error": self._load_error})
        if self.decoder is None:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "loading"})
        return self._json(HTTPStatus.OK, {"status": "ready", "kind": "language_model",
                                          "context_length": self.decoder.config.context_length,
                                          "chat": self.text is not None and self.text.chat_template is not None})

    def _models(self, _environ: dict) -> Handled:
        return self._json(HTTPStatus.OK, {"object": "list", "data": [
            {"id": self.config.model_name, "object": "model", "created": 0, "owned_by": "slipway"}]})

    def _read_body(self, environ: dict) -> bytes:
        limit = self.config.max_body_bytes
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit:
            raise protocol.RequestInvalid(f"body of {declared} bytes is over the limit of {limit}")
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise protocol.RequestInvalid(f"body is over the limit of {limit} bytes")
        return body

    def _generate(self, environ: dict, *, chat: bool) -> Handled:
        started = time.perf_counter()
        try:
            decoder, text = self.decoder, self.text
            if decoder is None or text is None:
                status, headers, body = self._error(HTTPStatus.SERVICE_UNAVAILABLE,
                                                    self._load_error or "the model is still loading", "not_ready")
                self.metrics.observe_request(status.value, time.perf_counter() - started, "not_ready")
                return status, headers, body
            request = protocol.parse(self._read_body(environ), chat=chat, max_tokens_limit=MAX_TOKENS_LIMIT)
            if request.model not in (None, self.config.model_name):
                status, headers, body = self._error(HTTPStatus.NOT_FOUND, f"this endpoint serves the model "
                                                    f"{self.config.model_name!r}, not {request.model!r}",
                                                    "invalid_request_error", "model")
                self.metrics.observe_request(status.value, time.perf_counter() - started, "bad_input")
                return status, headers, body
            prompt = text.render_chat(request.messages) if chat else request.prompt
            ids = text.encode(prompt or "")
            decoder.check_length(len(ids), request.max_tokens)
            if not ids:
                raise protocol.RequestInvalid("the prompt holds no tokens", "prompt")
        except (protocol.RequestInvalid, TextError, ValueError) as error:
            status, headers, body = self._error(HTTPStatus.BAD_REQUEST, str(error), "invalid_request_error",
                                                getattr(error, "param", None))
            self.metrics.observe_request(status.value, time.perf_counter() - started, "bad_input")
            return status, headers, body
        tokens = decoder.generate(ids, request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                                  seed=request.seed)
        run = _Run(self, request, len(ids), tokens, started)
        if request.stream:
            return HTTPStatus.OK, [("Content-Type", SSE), ("Cache-Control", "no-cache"),
                                   ("X-Accel-Buffering", "no")], run.stream()
        try:
            document = run.whole()
        except Exception:
            log.exception("completion failed")
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log", "server_error")
        return self._json(HTTPStatus.OK, document)


class _Run:
    """One generation: tokens to text pieces, stop strings, timings and metrics."""

    def __init__(self, app: LanguageModelApp, request: protocol.GenerationRequest, prompt_tokens: int,
                 tokens: Generator[int, None, None], started: float) -> None:
        self.app, self.request, self.prompt_tokens, self.tokens, self.started = app, request, prompt_tokens, tokens, \
            started
        self.answer = protocol.Answer(request, app.config.model_name)
        self.produced = 0
        self.finish = "length"

    def pieces(self) -> Iterator[str]:
        assert self.app.text is not None
        detokenizer, scanner = Detokenizer(self.app.text), protocol.StopScanner(self.request.stop)
        eos = self.app.decoder.config.eos_ids if self.app.decoder else frozenset()
        last = None
        for token in self.tokens:
            now = time.perf_counter()
            if last is None:
                self.app.metrics.ttft.observe(now - self.started)
            else:
                self.app.metrics.inter_token.observe(now - last)
            last = now
            self.produced += 1
            if token in eos:
                self.finish = "stop"
                break
            piece, stopped = scanner.feed(detokenizer.add(token))
            if piece:
                yield piece
            if stopped:
                self.finish = "stop"
                self.tokens.close()
                return
        rest = scanner.rest()
        if rest:
            yield rest

    def _done(self, code: int, reason: str | None = None) -> None:
        self.app.metrics.observe_request(code, time.perf_counter() - self.started, reason)
        self.app.metrics.count_tokens(self.prompt_tokens, self.produced)

    def whole(self) -> dict:
        try:
            text = "".join(self.pieces())
        except Exception:
            self.app.watcher.crashed()
            self._done(500, "internal")
            raise
        self._done(200)
        return self.answer.whole(text, self.finish, self.prompt_tokens, self.produced)

    def stream(self) -> Iterator[bytes]:
        code, reason = 200, None
        try:
            first = True
            for piece in self.pieces():
                yield protocol.sse(self.answer.chunk(piece, first=first))
                first = False
            if first and self.request.chat:
                yield protocol.sse(self.answer.chunk(None, first=True))
            yield protocol.sse(self.answer.chunk(None, self.finish))
            yield protocol.sse("[DONE]")
        except GeneratorExit:  # the client went away
            code, reason = 499, "client_closed"
            raise
        except Exception:
            log.exception("streamed completion %s failed", uuid.uuid4())
            self.app.watcher.crashed()
            code, reason = 500, "internal"
            yield protocol.sse(protocol.error_document("internal error; see the server log", "server_error"))
        finally:
            self._done(code, reason)
