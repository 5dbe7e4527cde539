"""The tokenizer of a language model (``tokenizer.json``, read by the tokenizers library) and its
chat template, rendered in Jinja's sandbox (a template is data from the build, never trusted code)."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


class TextError(ValueError):
    """The tokenizer files are missing or unusable, or a chat cannot be rendered."""


class Text:
    def __init__(self, folder: Path) -> None:
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # the tokenizers library raises its own exception type
            raise TextError(f"tokenizer.json cannot be read: {exc}") from exc
        self.chat_template = _chat_template(folder)
        settings = _json(folder / "tokenizer_config.json")
        self.bos_token = _token_text(settings.get("bos_token"))
        self.eos_token = _token_text(settings.get("eos_token"))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if self.chat_template is None:
            raise TextError("this model's tokenizer has no chat template; use /v1/completions")
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            return environment.from_string(self.chat_template).render(
                messages=messages, add_generation_prompt=True, bos_token=self.bos_token or "",
                eos_token=self.eos_token or "")
        except TemplateError as exc:
            raise TextError(f"the chat template fails: {exc}") from exc


class Detokenizer:
    """Turns a growing list of tokens into text pieces, holding back bytes of an unfinished character."""

    def __init__(self, text: Text) -> None:
        self.text, self.sent = text, ""
        self.ids: list[int] = []

    def add(self, token: int) -> str:
        self.ids.append(token)
        whole = self.text.decode(self.ids)
        if whole.endswith("\ufffd"):
            return ""
        piece, self.sent = whole[len(self.sent):], whole
        return piece


def _chat_template(folder: Path) -> str | None:
    file = folder / "chat_template.jinja"
    if file.is_file():
        return file.read_text()
    template = _json(folder / "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) and template else None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
