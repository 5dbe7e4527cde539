"""POST /api/v1/builds/: what CI sends, what is stored, and every bad input refused with nothing stored."""

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from releases import pipeline
from releases.models import Artifact, AuditEvent, ModelVersion, Release
from releases.storage import get_store
from tests.conftest import build_form, token_client
from tests.factories import digits_model, npz_bytes

URL = "/api/v1/builds/"


def stored_objects() -> list[Path]:
    return sorted(p for p in (get_store().root / "objects").rglob("*") if p.is_file())


def temp_files() -> list[Path]:
    return list((get_store().root / "tmp").glob("*"))


@pytest.fixture
def ci(users) -> APIClient:
    return token_client(users["ci"], ["builds:write", "releases:read"])


@pytest.fixture(autouse=True)
def _empty_store(settings, tmp_path) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


def test_a_build_is_stored_with_its_release_stages_and_audit_event(ci, users):
    response = ci.post(URL, build_form(), format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["created"] is True
    assert body["version"]["model"] == "digits"
    assert body["version"]["label"] == "1.0.0"
    assert body["version"]["author"] == "ci"
    assert body["version"]["metadata"] == {"dataset": "digits"}
    assert body["release"]["status"] == "pending"

    version = ModelVersion.objects.get()
    onnx_bytes = digits_model().onnx_bytes
    assert version.artifact.sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    assert version.artifact.size_bytes == len(onnx_bytes)
    assert version.artifact.file_format == "onnx"
    assert get_store().path_for(version.artifact.sha256).read_bytes() == onnx_bytes
    assert version.git_commit == "0123456789abcdef0123456789abcdef01234567"
    release = Release.objects.get()
    assert [s.name for s in release.stages.all()] == [spec.name for spec in pipeline.STAGES]
    assert [s.status for s in release.stages.all()] == ["queued"] + ["pending"] * (len(pipeline.STAGES) - 1)
    event = AuditEvent.objects.get(action="build.received")
    assert event.actor == users["ci"] and event.actor_label == "ci (token test)"
    assert event.after["sha256"] == version.artifact.sha256
    assert temp_files() == []


def test_the_same_idempotency_key_returns_the_same_build(ci):
    first = ci.post(URL, build_form(), format="multipart", HTTP_IDEMPOTENCY_KEY="run-42")
    again = ci.post(URL, build_form(), format="multipart", HTTP_IDEMPOTENCY_KEY="run-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False
    assert again.json()["version"]["id"] == first.json()["version"]["id"]
    assert ModelVersion.objects.count() == 1 and Release.objects.count() == 1
    assert temp_files() == []


def test_a_second_build_with_the_same_label_is_a_conflict(ci):
    assert ci.post(URL, build_form(), format="multipart").status_code == 201
    response = ci.post(URL, build_form(), format="multipart")
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "detail": "model digits already has a version '1.0.0'"}
    assert ModelVersion.objects.count() == 1
    assert len(stored_objects()) == 2 and temp_files() == []


def test_identical_files_are_stored_once(ci):
    ci.post(URL, build_form(version="1"), format="multipart")
    ci.post(URL, build_form(version="2"), format="multipart")
    assert Artifact.objects.count() == 4
    assert len(stored_objects()) == 2


class Pickled:
    pass


BAD_INPUTS = [
    ({"model": None}, 400, "model: This field is required."),
    ({"git_commit": "not-a-commit"}, 400, "git_commit: expected a hex commit"),
    ({"model": "../etc"}, 400, "model: Use 1-100 lower-case letters"),
    ({"version": "1.0/../../x"}, 400, "version: Use 1-64 letters"),
    ({"metadata": "{not json"}, 400, "metadata: not valid JSON"),
    ({"metadata": "[1, 2]"}, 400, "metadata: must be a JSON object"),
    ({"metadata": '{"a": "' + "x" * 70000 + '"}'}, 400, "metadata is larger than 65536 bytes"),
    ({"task": "astrology"}, 400, 'task: "astrology" is not a valid choice.'),
    ({"task": None, "model": "unknown"}, 400, "model 'unknown' does not exist; pass 'task'"),
    ({"artifact": SimpleUploadedFile("model.onnx", b"")}, 400, "artifact: The submitted file is empty."),
    ({"artifact": SimpleUploadedFile("model.onnx", pickle.dumps(Pickled()))}, 400, "artifact looks like a pickle"),
    ({"artifact": SimpleUploadedFile("model.pt", b"PK\x03\x04")}, 400, "artifact looks like a pickle"),
    ({"artifact": SimpleUploadedFile("model.exe", b"MZ")}, 400, "has an unknown format"),
    ({"artifact": SimpleUploadedFile("m.safetensors", b"12345678xx")}, 400, "has no safetensors header"),
    ({"eval_data": SimpleUploadedFile("eval.npz", b"")}, 400, "eval_data: The submitted file is empty."),
    ({"eval_data": SimpleUploadedFile("eval.npz", b"labels,1,2")}, 400, "eval_data is not an .npz file"),
    ({"eval_data": SimpleUploadedFile("e.npz", npz_bytes(labels=np.arange(3)))}, 400, "eval_data has no inputs"),
    ({"eval_data": SimpleUploadedFile("e.npz", npz_bytes(inputs=np.array([{}, 1], dtype=object)))}, 400,
     "holds Python objects"),
    ({"eval_data": SimpleUploadedFile("e.npz", b"PK\x03\x04garbage")}, 400, "eval_data is not a readable .npz"),
    ({"artifact": None}, 400, "artifact: No file was submitted."),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD_INPUTS,
                         ids=[f"{i}-{next(iter(c))}" for i, (c, _, _) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(ci, change, status, message):
    response = ci.post(URL, build_form(**change), format="multipart")
    assert response.status_code == status
    body = response.json()
    assert message in body["detail"], body
    assert ModelVersion.objects.count() == 0 and Artifact.objects.count() == 0 and Release.objects.count() == 0
    assert stored_objects() == [] and temp_files() == []


def test_an_upload_over_the_size_limit_is_413_and_leaves_no_file(ci, settings):
    settings.SLIPWAY_MAX_UPLOAD_BYTES = 1000
    big = SimpleUploadedFile("model.onnx", b"\x08\x07" + b"x" * 5000)
    response = ci.post(URL, build_form(artifact=big), format="multipart")
    assert response.status_code == 413
    assert response.json() == {"error": "upload_too_large",
                               "detail": "the build (artifact and eval_data together) is larger than the limit "
                                         "of 1000 bytes"}
    assert stored_objects() == [] and temp_files() == []


def test_file_names_never_become_paths(ci):
    form = build_form(artifact=SimpleUploadedFile("../../../../tmp/evil.onnx", digits_model().onnx_bytes))
    assert ci.post(URL, form, format="multipart").status_code == 201
    artifact = ModelVersion.objects.get().artifact
    assert artifact.filename == "evil.onnx"
    assert all(p.is_relative_to(settings.ARTIFACT_DIR) for p in stored_objects())
    assert not Path("/tmp/evil.onnx").exists()


def test_authentication_scope_and_role_are_required(users):
    assert APIClient().post(URL, build_form(), format="multipart").status_code == 401
    reader = token_client(users["ci"], ["releases:read"])
    response = reader.post(URL, build_form(), format="multipart")
    assert response.status_code == 403
    assert response.json()["detail"] == "this token lacks the 'builds:write' scope"
    viewer = token_client(users["victor"], ["builds:write"])
    response = viewer.post(URL, build_form(), format="multipart")
    assert response.status_code == 403
    assert response.json()["detail"] == "victor has no role that may post build"
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer slw_nope")
    assert bad.post(URL, build_form(), format="multipart").json() == {
        "error": "authentication_failed", "detail": "the token is unknown, expired or revoked"}
    assert ModelVersion.objects.count() == 0


def test_a_zip_bomb_is_refused_before_it_is_unpacked(ci, settings):
    settings.SLIPWAY_MAX_EVAL_UNPACKED_BYTES = 1_000_000
    bomb = io.BytesIO()
    np.savez_compressed(bomb, inputs=np.zeros((2000, 1000), dtype=np.float32))
    assert len(bomb.getvalue()) < 50_000
    response = ci.post(URL, build_form(eval_data=SimpleUploadedFile("e.npz", bomb.getvalue())), format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == "eval_data unpacks to 8000128 bytes; at most 1000000"
    assert stored_objects() == [] and temp_files() == []
