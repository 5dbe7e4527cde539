"""The sweeper re-sends stages the broker lost and fails stages whose worker died — from the database."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from releases.models import AuditEvent, Release, StageRun
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
    assert sweep() == {"resent": 1, "retried": 0, "failed": 0}
    assert cpu_queue_length() == 1
    assert sweep() == {"resent": 0, "retried": 0, "failed": 0}  # queued_at was renewed


def test_a_stage_running_past_its_limit_is_retried_then_failed_with_the_reason(release_id):
    old = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    stage = StageRun.objects.get(release_id=release_id, name="validate")
    StageRun.objects.filter(pk=stage.pk).update(status="running", started_at=old, attempt=1, worker_host="w1")
    assert sweep() == {"resent": 0, "retried": 1, "failed": 0}
    assert StageRun.objects.get(pk=stage.pk).status == "queued"
    StageRun.objects.filter(pk=stage.pk).update(status="running", started_at=old, attempt=3)
    Release.objects.filter(pk=release_id).update(status="running")
    assert sweep() == {"resent": 0, "retried": 0, "failed": 1}
    stage.refresh_from_db()
    assert stage.status == "failed"
    assert stage.error == (f"no word from worker w1 for longer than the stage time limit "
                           f"({settings.CELERY_TASK_TIME_LIMIT} s), 3 attempts")
    release = stage.release
    release.refresh_from_db()
    assert (release.status, release.failure_reason) == ("failed", f"validate: {stage.error}")
    assert AuditEvent.objects.filter(release_id=release_id, actor_label="sweeper", action="release.fail").exists()
