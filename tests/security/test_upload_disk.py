"""Finding 1: nobody fills the artifact store's disk through a URL that is not the builds endpoint.

The attack: multipart POSTs without a login, to the login forms and a page action (whose CSRF check
reads the body first, with a cookie the attacker chose), used to stream their files into
ARTIFACT_DIR/tmp/*.part, where they stayed.
"""

import os
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from releases.storage import get_store
from releases.uploads import sweep_staging
from tests.releases.test_storage import stored
from tests.s3server import PART_BYTES, bucket_keys, open_multipart_uploads

FILL = b"x" * (2 * 1024 * 1024)
CSRF = "a" * 32  # a token the attacker chose, sent as both the cookie and the field


@pytest.fixture
def artifacts(settings, tmp_path):
    settings.SLIPWAY_STORE = "fs"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return settings.ARTIFACT_DIR


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def attacker() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF
    return client


@pytest.mark.parametrize("path", ["/login/", "/admin/login/", "/releases/1/decide/",
                                  "/environments/production/rollback/", "/api/v1/alerts/", "/api/v1/builds/"])
def test_anonymous_multipart_posts_store_nothing(db, artifacts, path):
    form = {"csrfmiddlewaretoken": CSRF, "username": "x", "password": "y",
            "artifact": SimpleUploadedFile("fill.onnx", FILL), "eval_data": SimpleUploadedFile("fill.npz", FILL)}
    response = attacker().post(path, form)
    assert response.status_code in (200, 302, 401, 403, 404, 415)
    assert files_under(artifacts) == []


def test_a_session_cannot_post_builds_only_a_token(db, artifacts, users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["ci"])
    response = client.post("/api/v1/builds/", {"artifact": SimpleUploadedFile("m.onnx", FILL)})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert files_under(artifacts) == []


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(db, artifacts, settings):
    settings.SLIPWAY_MAX_REQUEST_BYTES = 1024 * 1024
    response = Client().post("/login/", {"username": "x", "file": SimpleUploadedFile("f.bin", FILL)})
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert f"at most {1024 * 1024} bytes" in response.json()["detail"]
    # The builds endpoint takes artifacts up to SLIPWAY_MAX_UPLOAD_BYTES (two of them, and the fields).
    settings.SLIPWAY_MAX_UPLOAD_BYTES = 1000
    big = Client().generic("POST", "/api/v1/builds/", b"", CONTENT_LENGTH=str(2000 + 1024 * 1024 + 1))
    assert big.status_code == 413


def test_unfinished_parts_are_swept_when_old(artifacts, settings):
    settings.SLIPWAY_STAGING_MAX_AGE_S = 3600
    store = get_store()
    old, fresh = store.writer(), store.writer()
    for writer in (old, fresh):
        writer.write(b"half an upload")  # written at once (no buffer in Python)
    os.utime(old.path, (time.time() - 7200, time.time() - 7200))
    assert sweep_staging() == 1
    assert files_under(artifacts) == [f"tmp/{fresh.path.name}"]
    fresh.abort()
    old.abort()  # (its file is gone already)


def test_unfinished_s3_uploads_are_swept_when_old(s3_store_settings, settings):
    store = get_store()
    writer = store.writer()
    writer.write(b"p" * PART_BYTES)  # one part sent: an open multipart upload
    staged = store.writer()
    staged.write(b"small")
    kept = staged.finish()  # a staged object never committed
    settings.SLIPWAY_STAGING_MAX_AGE_S = 3600
    sweep_staging()  # (moto dates every multipart upload in 2010, so only the object shows the age rule)
    assert kept.location in bucket_keys(store.endpoint_url, store.bucket)
    settings.SLIPWAY_STAGING_MAX_AGE_S = 0
    sweep_staging()
    assert stored(store) == []
    assert open_multipart_uploads(store.endpoint_url, store.bucket) == []


def test_beat_sweeps_them_on_a_schedule(artifacts, settings):
    import workers.tasks  # noqa: F401 (registers the tasks beat names)
    from slipway.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["uploads"]
    assert entry["schedule"] == 600.0  # SLIPWAY_STAGING_SWEEP_EVERY_S's default
    settings.SLIPWAY_STAGING_MAX_AGE_S = 3600
    writer = get_store().writer()
    writer.write(b"half an upload")
    os.utime(writer.path, (time.time() - 7200, time.time() - 7200))
    assert app.tasks[entry["task"]].apply().get() == 1
    assert files_under(artifacts) == []
    writer.abort()
