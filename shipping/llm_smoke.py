"""Smoke test of a deployed language model: a few prompts answered, whole and streamed.

For every prompt: HTTP 200 from ``/v1/completions`` with the identity headers (naming the expected
release), a text choice and token usage; then one streamed completion must arrive as server-sent
events ending with ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import requests

from shipping.smoke import IDENTITY_HEADERS, SmokeResult

NEW_TOKENS = 8


def _check_headers(index: int, answer: requests.Response, expected_release_id: str | None) -> list[str]:
    failures = []
    missing = [h for h in IDENTITY_HEADERS if h != "X-Prediction-Id" and not answer.headers.get(h)]
    if missing:
        failures.append(f"prompt {index}: headers missing: {', '.join(missing)}")
    served = answer.headers.get("X-Release-Id")
    if expected_release_id is not None and served != expected_release_id:
        failures.append(f"prompt {index}: answered by release {served!r}, not {expected_release_id!r}")
    return failures


def smoke_test_language_model(url: str, prompts: Sequence[str], expected_release_id: str | None = None,
                              timeout: float = 30.0) -> SmokeResult:
    if not prompts:
        return SmokeResult(passed=False, checked=0, failures=["no prompts to send"])
    failures: list[str] = []
    body = {"max_tokens": NEW_TOKENS, "temperature": 0}
    with requests.Session() as session:
        for index, prompt in enumerate(prompts):
            try:
                answer = session.post(f"{url}/v1/completions", json=body | {"prompt": prompt}, timeout=timeout)
            except requests.RequestException as error:
                failures.append(f"prompt {index}: request failed: {error}")
                continue
            if answer.status_code != 200:
                failures.append(f"prompt {index}: HTTP {answer.status_code}: {answer.text[:300]}")
                continue
            failures += _check_headers(index, answer, expected_release_id)
            try:
                document = answer.json()
                text = document["choices"][0]["text"]
                produced = document["usage"]["completion_tokens"]
            except (ValueError, KeyError, IndexError, TypeError):
                failures.append(f"prompt {index}: not a completion: {answer.text[:200]}")
                continue
            if not isinstance(text, str) or not 1 <= produced <= NEW_TOKENS:
                failures.append(f"prompt {index}: {produced} tokens generated, expected 1 to {NEW_TOKENS}")
        failures += _stream(session, url, prompts[0], body, timeout)
    return SmokeResult(passed=not failures, checked=len(prompts) + 1, failures=failures)


def _stream(session: requests.Session, url: str, prompt: str, body: dict, timeout: float) -> list[str]:
    try:
        with session.post(f"{url}/v1/completions", json=body | {"prompt": prompt, "stream": True}, stream=True,
                          timeout=timeout) as answer:
            if answer.status_code != 200 or not answer.headers.get("Content-Type", "").startswith(
                    "text/event-stream"):
                return [f"streamed completion: HTTP {answer.status_code} {answer.headers.get('Content-Type')}"]
            events = [line[6:] for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    except requests.RequestException as error:
        return [f"streamed completion failed: {error}"]
    if not events or events[-1] != "[DONE]":
        return ["streamed completion did not end with [DONE]"]
    try:
        chunks = [json.loads(event) for event in events[:-1]]
    except ValueError:
        return ["streamed completion sent an event that is not JSON"]
    if not chunks or chunks[-1]["choices"][0].get("finish_reason") not in ("stop", "length"):
        return ["streamed completion has no final chunk with a finish reason"]
    return []
