"""PUT /api/v1/builds/: a build as a raw body (its metadata JSON's bytes, eval_data's, then the artifact's) with
its other fields in the query string; stored like a posted build, every bad input refused with nothing stored."""

import hashlib
import json
import socket
from urllib.parse import urlencode, urlsplit

import pytest

from releases.models import ApiToken, Artifact, ModelVersion, Release
from releases.storage import get_store
from releases.storage.base import object_key
from tests.conftest import token_client
from tests.factories import digits_eval_npz, digits_model
from tests.releases.test_builds_api import stored_objects, temp_files
from tests.releases.test_llm_builds_api import EVAL, good_files, hf_tar
from tests.releases.test_storage import stored
from tests.s3server import PART_BYTES

URL = "/api/v1/builds/"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


METADATA = b'{"dataset": "digits"}'


def put_url(eval_data: bytes, artifact_name: str = "model.onnx", metadata: bytes = METADATA,
            **overrides: object) -> str:
    fields = {"model": "digits", "version": "1.0.0", "git_commit": COMMIT, "task": "classification",
              "artifact_name": artifact_name, "eval_data_name": "eval.npz", "metadata_bytes": len(metadata),
              "eval_data_bytes": len(eval_data), **overrides}
    return f"{URL}?{urlencode({k: v for k, v in fields.items() if v is not None})}"


def put(client, eval_data: bytes, artifact: bytes, metadata: bytes = METADATA, **fields: object):
    """The body: ``metadata``, then ``eval_data``, then ``artifact``."""
    return client.generic("PUT", put_url(eval_data, metadata=metadata, **fields), metadata + eval_data + artifact,
                          content_type="application/octet-stream")


@pytest.fixture(autouse=True)
def _empty_store(settings, tmp_path) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def ci(users):
    return token_client(users["ci"], ["builds:write", "releases:read"])


def assert_nothing_stored() -> None:
    assert ModelVersion.objects.count() == 0 and Artifact.objects.count() == 0 and Release.objects.count() == 0
    assert stored_objects() == [] and temp_files() == []


def test_an_onnx_build_is_stored_from_a_raw_body(ci):
    onnx, npz = digits_model().onnx_bytes, digits_eval_npz()
    response = put(ci, npz, onnx, artifact_sha256=hashlib.sha256(onnx).hexdigest().upper())
    assert response.status_code == 201, response.json()
    assert response.json()["version"]["metadata"] == {"dataset": "digits"}
    version = ModelVersion.objects.get()
    assert (version.artifact.sha256, version.artifact.size_bytes) == (hashlib.sha256(onnx).hexdigest(), len(onnx))
    assert (version.artifact.file_format, version.artifact.filename) == ("onnx", "model.onnx")
    assert (version.eval_data.sha256, version.eval_data.filename) == (hashlib.sha256(npz).hexdigest(), "eval.npz")
    assert sorted(p.read_bytes() for p in stored_objects()) == sorted([onnx, npz])
    assert Release.objects.get().status == "pending"
    assert temp_files() == []


def test_a_language_model_tar_is_stored_from_a_raw_body(ci):
    tar = hf_tar(good_files())
    response = put(ci, EVAL, tar, model="chat", task="language_model", metadata=b"", artifact_name="chat.tar",
                   eval_data_name="eval.jsonl")
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get()
    assert (version.artifact.file_format, version.eval_data.file_format) == ("hf-tar", "jsonl")
    assert (version.artifact.sha256, version.eval_data.sha256) == (hashlib.sha256(tar).hexdigest(),
                                                                   hashlib.sha256(EVAL).hexdigest())


@pytest.mark.parametrize(("eval_data", "artifact", "fields", "status", "detail"), [
    (EVAL, b"not a tar at all" * 64, {"model": "chat", "task": "language_model", "artifact_name": "chat.tar"}, 400,
     "a language-model build must be an uncompressed tar of a Hugging Face folder"),
    (b"npz", b"onnx", {"artifact_sha256": "0" * 64}, 400,
     f"the artifact arrived with sha256 {hashlib.sha256(b'onnx').hexdigest()}, not {'0' * 64} as sent"),
    (b"npz", b"", {"eval_data_bytes": 10}, 400,
     f"the body is {len(METADATA) + 3} bytes, shorter than metadata_bytes + eval_data_bytes ({len(METADATA)} + 10)"),
    (b"", b"", {"metadata": b"{}", "metadata_bytes": 10, "eval_data_bytes": 1}, 400,
     "the body is 2 bytes, shorter than metadata_bytes (10)"),
    (b"npz", b"onnx", {"eval_data_bytes": 0}, 400, "eval_data_bytes: Ensure this value is greater than or equal to 1."),
    (b"npz", b"onnx", {"git_commit": None}, 400, "git_commit: This field is required."),
])
def test_a_bad_raw_build_is_refused_with_the_reason_and_nothing_stored(ci, eval_data, artifact, fields, status,
                                                                      detail):
    response = put(ci, eval_data, artifact, **fields)
    assert response.status_code == status
    assert detail in response.json()["detail"], response.json()
    assert_nothing_stored()


def test_the_metadata_comes_first_in_the_body(ci):
    """20 KB of metadata: more than a request line may hold under gunicorn (4094 bytes), well in its limit."""
    metadata = {"notes": "n" * 20_000, "dataset": "digits", "name": "été"}
    onnx, npz = digits_model().onnx_bytes, digits_eval_npz()
    response = put(ci, npz, onnx, metadata=json.dumps(metadata, ensure_ascii=False).encode())
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get()
    assert version.metadata == metadata
    assert (version.artifact.sha256, version.eval_data.sha256) == (hashlib.sha256(onnx).hexdigest(),
                                                                   hashlib.sha256(npz).hexdigest())


@pytest.mark.parametrize(("metadata", "detail"), [
    (b'{"dataset": "digits"', "metadata: not valid JSON: Expecting ',' delimiter at position 20"),
    (b'[1, 2]', "metadata: must be a JSON object, not an array"),
    (b'"digits"', "metadata: must be a JSON object, not a string"),
    (b'{"name": "\xe9t\xe9"}', "metadata: not UTF-8 text: invalid continuation byte at position 10"),
], ids=["cut-json", "array", "string", "latin-1"])
def test_bad_metadata_in_the_body_is_refused_with_what_is_wrong_and_nothing_stored(ci, metadata, detail):
    response = put(ci, digits_eval_npz(), digits_model().onnx_bytes, metadata=metadata)
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json()["detail"] == detail
    assert_nothing_stored()


def test_metadata_in_the_query_string_is_refused(ci):
    """One way to send it: the query string has no room for the 64 KiB metadata may take."""
    response = ci.generic("PUT", put_url(b"npz", metadata=b"") + "&metadata=%7B%7D", b"npzonnx",
                          content_type="application/octet-stream")
    assert response.status_code == 400
    assert response.json()["detail"] == ("metadata: send metadata in the body, not in the query string: its first "
                                         "metadata_bytes bytes, then eval_data's, then the artifact's")
    assert_nothing_stored()


def test_a_raw_build_over_the_limit_is_refused_and_nothing_stored(ci, settings):
    npz = digits_eval_npz()
    settings.SLIPWAY_MAX_UPLOAD_BYTES = len(npz) + 100
    response = put(ci, npz, b"\x08\x07" + b"x" * 5000)
    assert response.status_code == 413
    assert response.json() == {"error": "upload_too_large", "detail": "the build (artifact and eval_data together) "
                               f"is larger than the limit of {len(npz) + 100} bytes"}
    assert_nothing_stored()


def test_token_scope_and_role_are_checked(users):
    onnx, npz = digits_model().onnx_bytes, digits_eval_npz()
    assert put(token_client(users["ci"], ["releases:read"]), npz, onnx).json()["detail"] == (
        "this token lacks the 'builds:write' scope")
    assert put(token_client(users["victor"], ["builds:write"]), npz, onnx).json()["detail"] == (
        "victor has no role that may post build")
    assert_nothing_stored()


def answer_to_headers_only(base_url: str, path: str, headers: dict[str, str], method: str = "PUT") -> tuple[int, bytes]:
    """Send a request's headers but none of its body; the server's answer (status, body) to them alone."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {address.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_server_answers_before_reading_a_byte_of_the_body(live_server, users, settings):
    """Refusals come while the client has sent only its headers: no token, more metadata_bytes than metadata
    may take, a token without the scope, a declared length over the limit (the build's limit, and the
    endpoint's limit with form fields)."""
    settings.SLIPWAY_MAX_UPLOAD_BYTES = 10_000
    _, raw = ApiToken.issue(users["ci"], "ci", ["builds:write"])
    _, read_only = ApiToken.issue(users["ci"], "ro", ["releases:read"])
    path = put_url(b"x" * 100)
    declared = {"Content-Length": "10001", "Content-Type": "application/octet-stream"}
    assert answer_to_headers_only(live_server.url, path, declared)[0] == 401
    too_much_metadata = put_url(b"x" * 100, metadata_bytes=settings.SLIPWAY_MAX_METADATA_BYTES + 1)
    status, body = answer_to_headers_only(live_server.url, too_much_metadata,
                                          {**declared, "Content-Length": "70000", "Authorization": f"Bearer {raw}"})
    assert (status, json.loads(body)["detail"]) == (
        400, f"metadata_bytes: metadata is larger than {settings.SLIPWAY_MAX_METADATA_BYTES} bytes")
    status, body = answer_to_headers_only(live_server.url, path, {**declared, "Authorization": f"Bearer {read_only}"})
    assert (status, b"lacks the 'builds:write' scope" in body) == (403, True)
    status, body = answer_to_headers_only(live_server.url, path, {**declared, "Authorization": f"Bearer {raw}"})
    assert (status, b"is larger than the limit of 10000 bytes" in body) == (413, True)
    huge = {**declared, "Content-Length": str(3 * 1024**3), "Authorization": f"Bearer {raw}"}
    for method, url in (("PUT", path), ("POST", URL)):
        status, body = answer_to_headers_only(live_server.url, url, huge, method)
        assert (status, b"request_too_large" in body) == (413, True)
    assert_nothing_stored()


def test_into_s3_a_raw_build_goes_up_in_parts_and_a_bad_one_leaves_nothing(ci, s3_store_settings):
    tar = hf_tar(good_files() | {"padding.txt": b"p" * (2 * PART_BYTES)})
    fields = {"model": "chat", "task": "language_model", "metadata": b"", "artifact_name": "chat.tar",
              "eval_data_name": "eval.jsonl"}
    store = get_store()
    assert put(ci, EVAL, tar[:len(tar) // 2], **fields).status_code == 400  # a cut tar: refused, nothing kept
    assert stored(store) == []
    response = put(ci, EVAL, tar, **fields)
    assert response.status_code == 201, response.json()
    sha = hashlib.sha256(tar).hexdigest()
    assert stored(store) == sorted([object_key(sha), object_key(hashlib.sha256(EVAL).hexdigest())])
    with store.open(sha) as stored_tar:
        assert stored_tar.read() == tar
