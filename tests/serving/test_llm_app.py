"""The language-model server's OpenAI-compatible API, called in-process on the small trained decoder."""

import json
from pathlib import Path

import pytest

from serving.config import ServingConfig
from serving.integrity import file_sha256
from serving.llm.app import LanguageModelApp
from serving.llm.protocol import StopScanner
from tests.serving.conftest import call

PROMPT = "When it rained, Ada and the fox"


@pytest.fixture(scope="module")
def app(small_llm_bundle: Path) -> LanguageModelApp:
    served = LanguageModelApp(ServingConfig(model=small_llm_bundle, model_name="tiny", version="3",
                                            sha256=file_sha256(small_llm_bundle), release_id="7"))
    served.load_model()
    assert served.decoder is not None, served._load_error
    return served


def post(app: LanguageModelApp, path: str, document: dict):
    return call(app, "POST", path, json.dumps(document).encode())


def events(body: bytes) -> list:
    lines = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_greedy_completion_continues_the_pattern_it_learnt_whole_and_streamed(app):
    answer = post(app, "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "temperature": 0})
    assert answer.status == 200 and answer.headers["X-Release-Id"] == "7"
    document = json.loads(answer.body)
    assert document["object"] == "text_completion"
    assert document["choices"][0]["text"] == " stayed at the"
    assert document["usage"] == {"prompt_tokens": document["usage"]["prompt_tokens"], "completion_tokens": 3,
                                 "total_tokens": document["usage"]["prompt_tokens"] + 3}
    streamed = post(app, "/v2/models/tiny/v1/completions",
                    {"prompt": PROMPT, "max_tokens": 3, "temperature": 0, "stream": True})
    assert streamed.status == 200 and streamed.headers["Content-Type"] == "text/event-stream"
    chunks = events(streamed.body)
    assert "".join(c["choices"][0]["text"] for c in chunks) == " stayed at the"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"


def test_a_stop_string_ends_the_completion_before_it(app):
    answer = post(app, "/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stop": [" at"]})
    choice = json.loads(answer.body)["choices"][0]
    assert (choice["text"], choice["finish_reason"]) == (" stayed", "stop")


def test_chat_completions_use_the_tokenizers_chat_template(app):
    answer = post(app, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                               "temperature": 0, "stream": True})
    chunks = events(answer.body)
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(("path", "document", "status", "message"), [
    ("/v1/completions", {"prompt": ""}, 400, "prompt must be a non-empty string"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}, 400, "max_tokens must be an integer from 1"),
    ("/v1/completions", {"prompt": "a", "max_tokens": 4000}, 400, "exceed the model's context of 256 tokens"),
    ("/v1/completions", {"prompt": "a", "temperature": 9}, 400, "temperature must be a number from 0 to 2"),
    ("/v1/completions", {"prompt": "a", "model": "other"}, 404, "serves the model 'tiny', not 'other'"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "messages must be a non-empty list"),
])
def test_requests_it_cannot_take_get_an_openai_style_error(app, path, document, status, message):
    answer = post(app, path, document)
    assert answer.status == status
    assert message in json.loads(answer.body)["error"]["message"]


def test_metrics_hold_time_to_first_token_and_inter_token_histograms(app):
    post(app, "/v1/completions", {"prompt": PROMPT, "max_tokens": 4, "temperature": 0})
    text = call(app, "GET", "/metrics").body.decode()
    assert 'slipway_model_time_to_first_token_seconds_count{model="tiny",version="3"}' in text
    assert 'slipway_model_inter_token_seconds_bucket{le="0.0005",model="tiny",version="3"}' in text
    assert 'slipway_model_tokens_total{kind="completion",model="tiny",version="3"}' in text
    assert 'slipway_model_requests_total{code="404",model="tiny",version="3"}' in text


def test_a_bundle_that_is_not_what_was_released_is_not_served(small_llm_bundle):
    served = LanguageModelApp(ServingConfig(model=small_llm_bundle, sha256="0" * 64))
    served.load_model()
    answer = call(served, "GET", "/readyz")
    assert answer.status == 503 and "expected 000" in json.loads(answer.body)["error"]


def test_stop_strings_split_across_pieces_are_held_back():
    scanner = StopScanner(("END",))
    assert scanner.feed("abcE") == ("ab", False)
    assert scanner.feed("N") == ("c", False)
    assert scanner.feed("Dxyz") == ("", True)
    assert scanner.text == "abc"
