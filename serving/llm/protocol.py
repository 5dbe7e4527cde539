"""The OpenAI-compatible request and answer shapes (completions and chat completions), as plain functions."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

MAX_TOKENS_DEFAULT = 16
MAX_STOP = 4


class RequestInvalid(ValueError):
    """A request the API cannot take; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    chat: bool
    model: str | None
    prompt: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    max_tokens: int = MAX_TOKENS_DEFAULT
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stream: bool = False
    stop: tuple[str, ...] = ()


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestInvalid(f"{name} must be a number from {low:g} to {high:g}", name)
    return float(value)


def parse(raw: bytes, *, chat: bool, max_tokens_limit: int) -> GenerationRequest:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RequestInvalid("the body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object")
    prompt = None
    messages: list[dict[str, str]] = []
    if chat:
        given = body.get("messages")
        if not isinstance(given, list) or not given or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in given):
            raise RequestInvalid("messages must be a non-empty list of {role, content} strings", "messages")
        messages = [{"role": m["role"], "content": m["content"]} for m in given]
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise RequestInvalid("prompt must be a non-empty string (one prompt per request)", "prompt")
    tokens = body.get("max_completion_tokens", body.get("max_tokens", MAX_TOKENS_DEFAULT))
    if tokens is None:
        tokens = MAX_TOKENS_DEFAULT
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= max_tokens_limit:
        raise RequestInvalid(f"max_tokens must be an integer from 1 to {max_tokens_limit}", "max_tokens")
    if body.get("n", 1) not in (1, None):
        raise RequestInvalid("only n=1 is supported", "n")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, list | tuple) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise RequestInvalid(f"stop must be a string or a list of at most {MAX_STOP} non-empty strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestInvalid("seed must be an integer", "seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestInvalid("stream must be true or false", "stream")
    model = body.get("model")
    return GenerationRequest(
        chat=chat, model=model if isinstance(model, str) else None, prompt=prompt, messages=messages,
        max_tokens=tokens, temperature=_number(body, "temperature", 1.0, 0, 2),
        top_p=_number(body, "top_p", 1.0, 0.0001, 1), seed=seed, stream=stream, stop=tuple(stop))


def error_document(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Answer:
    """Builds the answer documents of one request: whole, or as stream chunks."""

    def __init__(self, request: GenerationRequest, model: str) -> None:
        self.chat, self.model = request.chat, model
        self.id = ("chatcmpl-" if request.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, chunk: bool) -> dict:
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": kind + (".chunk" if chunk and self.chat else ""),
                "created": self.created, "model": self.model}

    def whole(self, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                  if self.chat else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
        return self._envelope(False) | {"choices": [choice], "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}}

    def chunk(self, text: str | None, finish: str | None = None, *, first: bool = False) -> dict:
        if self.chat:
            delta: dict = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return self._envelope(True) | {"choices": [choice]}


def sse(document: dict | str) -> bytes:
    data = document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class StopScanner:
    """Cuts generated text at the first stop string; holds back text that may begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops, self.text, self.sent = stops, "", 0
        self.hold = max((len(s) for s in stops), default=1) - 1

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that may be sent now, and whether a stop string was met."""
        self.text += piece
        found = [i for i in (self.text.find(s, max(self.sent - self.hold, 0)) for s in self.stops) if i >= 0]
        if found:
            cut = min(found)
            out, self.sent = self.text[self.sent:cut], cut
            self.text = self.text[:cut]
            return out, True
        ready = max(len(self.text) - self.hold, self.sent)
        out, self.sent = self.text[self.sent:ready], ready
        return out, False

    def rest(self) -> str:
        out, self.sent = self.text[self.sent:], len(self.text)
        return out
