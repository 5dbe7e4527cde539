"""With SLIPWAY_STORE=s3 a build goes from the API into the bucket, and a worker on another "machine"
(its own artifact folder, the S3 settings in its environment) takes it to the gate reading only the
bucket — never the web's disk. The bucket is moto's S3 server over HTTP (tests/s3server.py)."""

from pathlib import Path

import pytest
from django.conf import settings

from releases.models import Artifact, Model, ReleasePolicy
from releases.storage.base import object_key
from tests.conftest import build_form, token_client, wait_for_status
from tests.s3server import bucket_keys, open_multipart_uploads, s3_environment
from tests.workerproc import session_worker_off_the_queues, start_worker, stop_worker, wait_for_worker

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def files_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_a_build_reaches_the_gate_through_the_bucket_only(celery_worker, users, s3_store_settings, s3_endpoint,
                                                          tmp_path):
    bucket = s3_store_settings
    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model, candidates=["int8-dynamic"])
    worker_disk = tmp_path / "worker-machine"
    env = s3_environment(s3_endpoint, bucket) | {"SLIPWAY_ARTIFACT_DIR": str(worker_disk)}
    with session_worker_off_the_queues(celery_worker):
        worker = start_worker("s3-worker", "cpu,gpu,deploy", tmp_path / "s3-worker.log", env)
        try:
            wait_for_worker("s3-worker")
            response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
            assert response.status_code == 201, response.json()
            release = wait_for_status(response.json()["release"]["id"], "awaiting_approval", timeout=120)
        finally:
            stop_worker(worker)

    assert [(s.name, s.status) for s in release.stages.all()][:5] == [
        ("validate", "succeeded"), ("convert", "succeeded"), ("compress", "succeeded"),
        ("evaluate", "succeeded"), ("gate", "waiting")]
    shas = set(Artifact.objects.exclude(sha256="").values_list("sha256", flat=True))
    kinds = sorted(Artifact.objects.values_list("kind", flat=True))
    assert kinds == ["eval-data", "int8-dynamic", "original"]
    assert bucket_keys(s3_endpoint, bucket) == sorted(f"slipway/{object_key(sha)}" for sha in shas)
    assert open_multipart_uploads(s3_endpoint, bucket) == []
    # The web kept nothing on its disk; the worker read every artifact from its own cache of the bucket.
    assert files_under(Path(settings.ARTIFACT_DIR)) == set()
    assert files_under(worker_disk / "cache") == shas
