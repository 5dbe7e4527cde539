"""The sweeper re-sends stages the broker lost and fails stages whose worker died — from the database."""

import base64
import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from releases import deploys
from releases.models import AuditEvent, Deployment, Environment, Release, Service, StageRun
from releases.sweeper import sweep
from tests.conftest import build_form, token_client


@pytest.fixture
def release_id(users, settings, tmp_path) -> int:
    settings.ARTIFACT_DIR = tmp_path
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    return response.json()["release"]["id"]


def cpu_queue_length() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).llen("cpu")


@pytest.mark.real_broker
def test_a_queued_stage_nobody_took_is_sent_again(release_id):
    redis.Redis.from_url(settings.REDIS_URL).delete("cpu")
    StageRun.objects.filter(release_id=release_id, name="validate").update(
        queued_at=timezone.now() - timedelta(minutes=5))
    assert sweep() == {"resent": 1, "retried": 0, "failed": 0, "stops_resent": 0}
    assert cpu_queue_length() == 1
    assert sweep() == {"resent": 0, "retried": 0, "failed": 0, "stops_resent": 0}  # queued_at was renewed


def test_a_stage_running_past_its_limit_is_retried_then_failed_with_the_reason(release_id):
    old = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    stage = StageRun.objects.get(release_id=release_id, name="validate")
    StageRun.objects.filter(pk=stage.pk).update(status="running", started_at=old, attempt=1, worker_host="w1")
    assert sweep() == {"resent": 0, "retried": 1, "failed": 0, "stops_resent": 0}
    assert StageRun.objects.get(pk=stage.pk).status == "queued"
    StageRun.objects.filter(pk=stage.pk).update(status="running", started_at=old, attempt=3)
    Release.objects.filter(pk=release_id).update(status="running")
    assert sweep() == {"resent": 0, "retried": 0, "failed": 1, "stops_resent": 0}
    stage.refresh_from_db()
    assert stage.status == "failed"
    assert stage.error == (f"no word from worker w1 for longer than the stage time limit "
                           f"({settings.CELERY_TASK_TIME_LIMIT} s), 3 attempts")
    release = stage.release
    release.refresh_from_db()
    assert (release.status, release.failure_reason) == ("failed", f"validate: {stage.error}")
    assert AuditEvent.objects.filter(release_id=release_id, actor_label="sweeper", action="release.fail").exists()


def deploy_queue() -> list[tuple[str, dict]]:
    """The tasks waiting on the deploy queue: (name, keyword arguments)."""
    messages = [json.loads(m) for m in redis.Redis.from_url(settings.REDIS_URL).lrange("deploy", 0, -1)]
    return [(m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[1]) for m in messages]


@pytest.fixture
def stopping(release_id) -> Deployment:
    """A deployment taken out of service whose stop no worker confirmed yet."""
    release = Release.objects.get(pk=release_id)
    service = Service.objects.create(environment=Environment.objects.get(name="staging"), model=release.version.model)
    return Deployment.objects.create(service=service, release=release, role="stopped", instance={"handle": "1"},
                                     stop_sent_at=timezone.now())


@pytest.mark.real_broker
def test_an_unconfirmed_stop_is_sent_again_until_a_worker_confirms_it(stopping):
    redis.Redis.from_url(settings.REDIS_URL).delete("deploy")
    assert sweep()["stops_resent"] == 0  # sent just now: its worker may be stopping it
    Deployment.objects.filter(pk=stopping.pk).update(stop_sent_at=timezone.now() - timedelta(minutes=5))
    assert sweep()["stops_resent"] == 1
    assert deploy_queue() == [("workers.tasks.stop_instance", {"deployment_id": stopping.pk})]
    assert sweep()["stops_resent"] == 0  # stop_sent_at was renewed
    Deployment.objects.filter(pk=stopping.pk).update(stop_sent_at=timezone.now() - timedelta(minutes=5),
                                                     stopped_at=timezone.now())
    assert sweep()["stops_resent"] == 0  # confirmed gone
    redis.Redis.from_url(settings.REDIS_URL).delete("deploy")


@pytest.mark.real_broker
def test_a_stop_the_broker_refuses_stays_owed(stopping, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("releases.deploys.current_app.send_task", refuse)
    assert deploys.send_stop(stopping.pk) is False
    assert f"could not send the stop of deployment {stopping.pk}" in caplog.text
    Deployment.objects.filter(pk=stopping.pk).update(stop_sent_at=timezone.now() - timedelta(minutes=5))
    assert sweep()["stops_resent"] == 0  # sent again, refused again: owed still
    stopping.refresh_from_db()
    assert stopping.stopped_at is None and timezone.now() - stopping.stop_sent_at < timedelta(minutes=1)
