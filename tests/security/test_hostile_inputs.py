"""Finding 8: hostile build inputs get a JSON error saying what is wrong, and nothing is stored; finding 7:
errors name an artifact by its sha256, never a server path."""

import hashlib
import tempfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from releases.models import Artifact, Release
from releases.redact import without_paths
from tests.conftest import build_form, token_client
from tests.factories import digits_eval_npz, digits_model
from tests.releases.test_builds_api import URL, stored_objects, temp_files
from tests.releases.test_streamed_builds_api import put


@pytest.fixture
def ci(users, settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return token_client(users["ci"], ["builds:write", "releases:read"])


def refused(response, code: int, error: str) -> str:
    assert response.status_code == code, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert Release.objects.count() == 0 and Artifact.objects.count() == 0
    assert stored_objects() == [] and temp_files() == []
    return body["detail"]


def test_a_10_mb_metadata_field_gets_a_json_error(ci, settings):
    detail = refused(ci.post(URL, build_form(metadata="x" * (10 * 1024 * 1024)), format="multipart"), 413,
                     "request_too_large")
    assert detail == (f"a form field is larger than SLIPWAY_MAX_FIELDS_BYTES ({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                      "bytes); files go in file parts")


def test_metadata_over_its_limit_in_a_streamed_build_gets_a_json_error(ci, settings):
    detail = refused(put(ci, digits_eval_npz(), digits_model().onnx_bytes, metadata=b"x" * (10 * 1024 * 1024)), 400,
                     "invalid")
    assert detail == f"metadata_bytes: metadata is larger than {settings.SLIPWAY_MAX_METADATA_BYTES} bytes"


def test_metadata_sent_as_a_file_is_told_so(ci):
    form = build_form(metadata=SimpleUploadedFile("metadata.json", b'{"dataset": "digits"}'))
    detail = refused(ci.post(URL, form, format="multipart"), 400, "invalid")
    assert detail == ("metadata: sent as a file; send the JSON object as a plain form field "
                      "(curl -F 'metadata={...}', not =@file)")


def test_metadata_that_is_json_but_not_an_object_says_what_it_is(ci):
    detail = refused(ci.post(URL, build_form(metadata="[1, 2]"), format="multipart"), 400, "invalid")
    assert detail == "metadata: must be a JSON object, not an array"


@pytest.mark.parametrize(("data", "message"), [
    (digits_model().onnx_bytes[: len(digits_model().onnx_bytes) // 2], "artifact is a truncated ONNX file"),
    (digits_model().onnx_bytes[:-3], "artifact is a truncated ONNX file"),
    (b"\x08\x07this is not a protobuf", "artifact is not a readable ONNX file"),
    (b"\x08\x07\x12\x03abc", "artifact is not an ONNX model: it has no graph"),
    (b"\x08\x07\x3a\x03\x0a\x09\x00", "artifact is a truncated ONNX file"),  # the graph's node runs past it
], ids=["half", "last-bytes-cut", "not-protobuf", "no-graph", "corrupt-graph"])
@pytest.mark.parametrize("method", ["POST", "PUT"])  # a multipart form, and the streamed raw body
def test_a_truncated_or_corrupt_onnx_is_refused_at_upload(ci, data, message, method):
    if method == "POST":
        answer = ci.post(URL, build_form(artifact=SimpleUploadedFile("model.onnx", data)), format="multipart")
    else:
        answer = put(ci, digits_eval_npz(), data)
    detail = refused(answer, 400, "bad_upload")
    assert detail.startswith(message)
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in detail
    assert "/" not in detail


def test_errors_name_stored_objects_by_sha256_and_cut_other_server_paths(settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    sha = "ab" + "0" * 62
    text = (f"Unable to parse proto from file: {settings.ARTIFACT_DIR}/objects/ab/{sha}. Please check; "
            f"also {settings.ARTIFACT_DIR}/work/12/model-int8.onnx and {settings.SLIPWAY_CACHE_DIR}/objects/ab/{sha}")
    assert without_paths(text) == (f"Unable to parse proto from file: artifact sha256:{sha}. Please check; "
                                   f"also model-int8.onnx and artifact sha256:{sha}")
    # A root is cut only where a path starts with it, never from inside another path.
    assert without_paths(f"/srv{tempfile.gettempdir()}/model.onnx") == f"/srv{tempfile.gettempdir()}/model.onnx"
