"""kill -9 of a worker in the middle of a stage: the stage runs again on another worker and the release
reaches its gate, or, out of attempts, fails with the reason — never left running."""

import re

import pytest
from django.conf import settings

from releases.models import AuditEvent, Release, StageRun
from tests.conftest import build_form, token_client, wait_for_status
from tests.reliability.drills import Sweeper, figures, wait_for_stage

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.real_broker]


def post_build(users, version: str = "1.0.0") -> int:
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(version=version), format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()["release"]["id"]


def test_a_stage_whose_worker_is_killed_runs_again_on_another_worker(users, drill_worker):
    first = drill_worker("drill-a")
    release_id = post_build(users)
    killed = wait_for_stage(release_id, "compress", "running")
    first.kill()
    drill_worker("drill-b")
    with Sweeper():
        release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=120)
    assert release.status == "awaiting_approval", release.failure_reason
    stage = StageRun.objects.get(pk=killed.pk)
    assert (stage.status, stage.attempt) == ("succeeded", 2)
    retry = AuditEvent.objects.get(release_id=release_id, actor_label="sweeper", action="stage.queue")
    assert re.fullmatch(rf"worker {killed.worker_host} went silent: no heartbeat for \d+ s \(timeout 3 s\); "
                        r"attempt 2 follows", retry.reason)
    # No worker announced a CUDA device: the retry of compress goes to the cpu queue, and says why.
    no_gpu = f"no GPU worker seen in the last {3 * settings.SLIPWAY_WORKER_HEARTBEAT_S:g} s: running on CPU"
    assert (retry.before, retry.after) == ({"status": "running", "attempt": 1},
                                           {"status": "queued", "attempt": 1, "queue": "cpu", "step": no_gpu})
    assert figures([release_id], {release_id: release.status}, {"awaiting_approval"}) == {
        "releases_lost": 0, "stages_stuck": 0, "double_deploys": 0}


def test_a_stage_out_of_attempts_fails_with_the_reason(users, drill_worker, settings):
    settings.SLIPWAY_STAGE_MAX_ATTEMPTS = 1
    worker = drill_worker("drill-c")
    release_id = post_build(users)
    killed = wait_for_stage(release_id, "validate", "running")
    worker.kill()
    with Sweeper():
        release = wait_for_status(release_id, "failed", timeout=60)
    stage = StageRun.objects.get(pk=killed.pk)
    assert stage.status == "failed"
    assert re.fullmatch(rf"worker {killed.worker_host} went silent: no heartbeat for \d+ s \(timeout 3 s\), "
                        r"1 attempts", stage.error)
    assert release.failure_reason == f"validate: {stage.error}"
    assert set(Release.objects.get(pk=release_id).stages.exclude(pk=stage.pk).values_list("status", flat=True)) == {
        "skipped"}
