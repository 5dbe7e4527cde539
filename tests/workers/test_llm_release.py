"""A decoder language model trained by the test goes through the pipeline like any build: converted to ONNX
with a KV cache, int4 candidates built and measured, one chosen inside the budget, served in staging
behind the proxy, streamed to the official openai client, and rolled back to the release before.
Real worker process, real HAProxy, model servers as local processes."""

import openai
import pytest
import requests
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from releases.models import Deployment, Metric, Model, ReleasePolicy
from tests.conftest import build_form, token_client, wait_for_status
from tests.llm_model import eval_jsonl, pack

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
STAGING = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}"
PROMPT = "When it rained, Ada and the fox"


def post(ci, folder, version: str) -> int:
    form = build_form(model="tiny-llm", version=version, task="language_model", metadata="{}",
                      artifact=SimpleUploadedFile("tiny-llm.tar", pack(folder)),
                      eval_data=SimpleUploadedFile("eval.jsonl", eval_jsonl()))
    response = ci.post("/api/v1/builds/", form, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()["release"]["id"]


def to_staging(ci, alice, folder, version: str) -> int:
    release_id = post(ci, folder, version)
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=900)
    assert release.status == "awaiting_approval", release.failure_reason
    assert alice.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json").status_code == 201
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=120)
    assert release.status == "awaiting_approval", release.failure_reason
    assert release.stages.get(name="deploy_staging").status == "succeeded"
    return release_id


def test_a_trained_decoder_is_released_streamed_by_the_openai_client_and_rolled_back(celery_worker, users,
                                                                                       small_llm):
    model = Model.objects.create(name="tiny-llm", task="language_model")
    ReleasePolicy.objects.create(model=model, candidates=["int4-rtn-b32", "int4-rtn-b128", "fp16"])
    ci, alice = token_client(users["ci"]), token_client(users["alice"])
    first = to_staging(ci, alice, small_llm, "1")

    release = model.versions.get(label="1").releases.get()
    # No worker announced a CUDA device: candidates are built and measured on the cpu queue, the fallback.
    routes = {stage.name: (stage.queue, stage.device) for stage in release.stages.filter(status="succeeded")}
    assert {name: routes[name] for name in ("convert", "compress", "evaluate", "deploy_staging")} == {
        "convert": ("cpu", "cpu"), "compress": ("cpu", "cpu"), "evaluate": ("cpu", "cpu"),
        "deploy_staging": ("deploy", "cpu")}
    assert "s: running on CPU" in release.stages.get(name="compress").log
    fp32 = release.artifacts.get(kind="onnx-fp32")
    assert fp32.file_format == "llm-onnx-tar" and fp32.recipe["kv_cache"] is True
    assert fp32.recipe["greedy_identical"] == 1.0 and fp32.recipe["parity_max_abs_diff"] < 1e-3
    assert "not applicable" in release.artifacts.get(kind="fp16").error
    assert release.chosen_artifact.kind.startswith("int4-"), release.choice_reasons
    chosen = {m.name: m.value for m in Metric.objects.filter(release=release, artifact=release.chosen_artifact)}
    base = {m.name: m.value for m in Metric.objects.filter(release=release, artifact=fp32)}
    assert chosen["perplexity"] <= base["perplexity"] * 1.03
    assert chosen["greedy_exact_match"] >= 0.9
    assert base["size_bytes"] / chosen["size_bytes"] >= 4
    page = Client()
    page.force_login(users["alice"])
    html = page.get(f"/releases/{first}/").content.decode()
    assert "int4-rtn-b128" in html and "perplexity against tokens/s (batch 1)" in html

    client = openai.OpenAI(base_url=f"{STAGING}/v2/models/tiny-llm/v1", api_key="not-checked", max_retries=0)
    whole = client.completions.with_raw_response.create(model="tiny-llm", prompt=PROMPT, max_tokens=8,
                                                        temperature=0)
    assert whole.headers["X-Release-Id"] == str(first)
    completion = whole.parse()
    assert completion.usage.completion_tokens == 8 and completion.choices[0].finish_reason == "length"
    streamed = list(client.completions.create(model="tiny-llm", prompt=PROMPT, max_tokens=8, temperature=0,
                                              stream=True))
    assert len(streamed) >= 2
    assert "".join(c.choices[0].text for c in streamed) == completion.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "length"
    chat = list(client.chat.completions.create(model="tiny-llm", messages=[{"role": "user", "content": PROMPT}],
                                               max_tokens=4, temperature=0, stream=True))
    assert chat[0].choices[0].delta.role == "assistant" and chat[-1].choices[0].finish_reason == "length"

    ReleasePolicy.objects.filter(model=model).update(candidates=["int4-rtn-b128"])
    second = to_staging(ci, alice, small_llm, "2")
    raw = client.completions.with_raw_response.create(model="tiny-llm", prompt=PROMPT, max_tokens=2)
    assert raw.headers["X-Release-Id"] == str(second)

    oncall = token_client(users["ci"], ["rollback", "releases:read"])
    response = oncall.post("/api/v1/environments/staging/rollback/",
                           {"reason": "answers drifted", "expected_release": second}, format="json")
    assert response.status_code == 200, response.json()
    raw = client.completions.with_raw_response.create(model="tiny-llm", prompt=PROMPT, max_tokens=2)
    assert raw.headers["X-Release-Id"] == str(first)
    serving = Deployment.objects.get(service__environment__name="staging", role="active")
    metrics = requests.get(f"{serving.endpoint}/metrics", timeout=5).text  # the server's own, not the proxy's
    assert "slipway_model_time_to_first_token_seconds_bucket" in metrics
