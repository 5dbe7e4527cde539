import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from releases.models import ApiToken, Release, StageRun
from releases.models.pipeline import StageStatus
from tests import services
from tests.factories import digits_eval_npz, digits_model
from tests.workerproc import stop_worker, worker_database_url

ALL_SCOPES = ["builds:write", "releases:read", "approve", "deploy", "rollback", "webhooks:write", "feedback", "alerts"]
# The S3-compatible server; Chromium (browser, open_as); the small language model.
pytest_plugins = ["tests.s3server", "tests.browser", "tests.llm_fixtures", "tests.haproxy_scene"]


@pytest.fixture(scope="session", autouse=True)
def _services_up() -> None:
    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        services.require("PostgreSQL", os.environ["DATABASE_URL"])
    if settings.REDIS_URL:
        services.require("Redis", settings.REDIS_URL)


def make_user(username: str, *groups: str) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    user.groups.add(*(Group.objects.get(name=g) for g in groups))
    return user


@pytest.fixture
def users(db) -> dict[str, User]:
    return {
        "ci": make_user("ci", "deployer"),
        "alice": make_user("alice", "approver"),
        "bob": make_user("bob", "approver"),
        "victor": make_user("victor", "viewer"),
    }


def token_client(user: User, scopes: list[str] | None = None) -> APIClient:
    _, raw = ApiToken.issue(user, "test", scopes or ALL_SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def build_form(model: str = "digits", version: str = "1.0.0", **overrides: object) -> dict:
    form = {
        "model": model, "version": version, "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "ci_run_url": "https://ci.example.com/runs/1", "metadata": '{"dataset": "digits"}',
        "task": "classification",
        "artifact": SimpleUploadedFile("model.onnx", digits_model().onnx_bytes),
        "eval_data": SimpleUploadedFile("eval.npz", digits_eval_npz()),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


@pytest.fixture
def celery_worker(_worker_process: subprocess.Popen, transactional_db) -> subprocess.Popen:
    """The real worker, for one transactional test; afterwards it is left idle, so that nothing it runs
    meets the flush of the database."""
    yield _worker_process
    wait_until_idle()


@pytest.fixture
def beat(celery_worker, tmp_path) -> subprocess.Popen:
    """The real `celery beat`, checking canaries every half second (it also sends the other scheduled tasks;
    monitoring collection only hourly: tests collect when they choose, at the boundaries they assert on)."""
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "slipway.settings", "SLIPWAY_CANARY_CHECK_EVERY_S": "0.5",
                        "SLIPWAY_MONITORING_COLLECT_EVERY_S": "3600"}
    with open(Path(settings.DATA_DIR) / "beat.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "slipway", "beat", "-s",
                                 str(tmp_path / "beat-schedule"), "--loglevel", "INFO"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    stop_worker(proc)


def wait_until_idle(timeout: float = 120) -> None:
    busy = StageRun.objects.filter(status__in=[StageStatus.QUEUED, StageStatus.RUNNING])
    deadline = time.monotonic() + timeout
    while busy.exists():
        if time.monotonic() > deadline:
            left = list(busy.values_list("release_id", "name", "status"))
            raise AssertionError(f"stages still queued or running after {timeout:.0f} s: {left}")
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _no_broker_without_worker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that commit but do not ask for the worker queue their stages in the database only: the
    session's worker, still running for other tests, must not act on their records meanwhile."""
    if "celery_worker" not in request.fixturenames and not request.node.get_closest_marker("real_broker"):
        monkeypatch.setattr("releases.pipeline.send", lambda stage: False)
        monkeypatch.setattr("webhooks.deliveries.enqueue", lambda delivery_id, countdown=None: False)
        monkeypatch.setattr("releases.deploys.send_stop", lambda deployment_id: False)
        monkeypatch.setattr("workers.shadowing.send_launch", lambda run_id: False)


@pytest.fixture(scope="session")
def _worker_process(django_db_setup, django_db_blocker) -> subprocess.Popen:
    """A real `celery worker` process on the test database and the test Redis database."""
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        pytest.skip("the worker tests run against PostgreSQL (set DATABASE_URL)")
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    log_path = Path(settings.DATA_DIR) / "worker.log"
    env = os.environ | {"DATABASE_URL": worker_database_url(), "DJANGO_SETTINGS_MODULE": "slipway.settings"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "slipway", "worker", "-Q", "cpu,gpu,deploy", "-c", "2",
             "-n", "test-worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    stop_worker(proc)
    stop_serving()


def stop_serving() -> None:
    """Stop the HAProxy and the model servers that this test session's worker started."""
    from shipping.cleanup import stop_serving as stop_registered_serving

    stop_registered_serving(settings.SLIPWAY_PROXY_DIR, settings.SLIPWAY_SERVING_DIR / "pids")


def wait_for_status(release_id: int, *statuses: str, timeout: float = 60) -> Release:
    """Poll the database until the release reaches one of `statuses`; fail with its stages if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        release = Release.objects.get(pk=release_id)
        if release.status in statuses:
            return release
        time.sleep(0.1)
    stages = [(s.name, s.status, s.error) for s in release.stages.all()]
    log = (Path(settings.DATA_DIR) / "worker.log").read_text()[-3000:]
    raise AssertionError(f"release {release_id} is {release.status}, not {statuses}: {stages}\n{log}")


def to_staging(ci: APIClient, approver: APIClient, version: str, timeout: float = 120, **form: object) -> int:
    """Post a build (digits unless `form` says otherwise), approve it at the gate and wait until it serves
    in staging (the production gate then waits); returns the release's id."""
    response = ci.post("/api/v1/builds/", build_form(version=version, **form), format="multipart")
    assert response.status_code == 201, response.json()
    release_id = response.json()["release"]["id"]
    wait_for_status(release_id, "awaiting_approval", timeout=timeout)
    assert approver.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json").status_code == 201
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=timeout)
    assert release.stages.get(name="deploy_staging").status == "succeeded", release.failure_reason
    assert release.stages.get(name="production_gate").status == "waiting"
    return release_id


def to_production(ci: APIClient, approver: APIClient, deployer: APIClient, version: str, **form: object) -> int:
    """to_staging, then the production approval: the release goes on to its canary in production."""
    release_id = to_staging(ci, approver, version, **form)
    answer = deployer.post(f"/api/v1/releases/{release_id}/approve/", {"comment": "prod ok"}, format="json")
    assert answer.status_code == 201, answer.json()
    return release_id


def served_by(base: str, model: str = "digits") -> str:
    """Which release answers one inference request for the model at an environment's address."""
    import numpy as np
    import requests

    from serving import oip

    body = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})
    answer = requests.post(base + oip.infer_path(model), json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Release-Id"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A transactional test must restore the migrated data (groups, content types) it flushes: without
    serialized_rollback, the flush after it leaves the next tests without groups and with content types
    that the next restore then inserts twice."""
    for item in items:
        mark = item.get_closest_marker("django_db")
        transactional = (mark and mark.kwargs.get("transaction")) or "transactional_db" in getattr(
            item, "fixturenames", ())
        if transactional and not (mark and mark.kwargs.get("serialized_rollback")):
            raise pytest.UsageError(f"{item.nodeid}: django_db(transaction=True) needs serialized_rollback=True")
