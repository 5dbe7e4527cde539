"""Never two deploys of one release: the same deploy stage sent twice at once runs once, and a stage run
again after its worker was lost finds the release already serving and does not deploy it again —
two real workers, real HAProxy, model servers as local processes."""

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from releases import pipeline
from releases.models import AuditEvent, Deployment, Release, StageRun, TrafficChange
from releases.statemachine import StageBusy
from tests.conftest import stop_serving, wait_for_status
from tests.reliability.drills import Sweeper
from tests.reliability.test_worker_kill import post_build
from workers.context import StageContext

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.real_broker]
SHIPPED = ["validate", "convert", "compress", "evaluate", "gate", "package"]


@pytest.fixture
def approved_release(users, drill_worker) -> int:
    """A release past its gate and its image, its deploy_staging stage queued, two workers waiting."""
    release_id = post_build(users)
    StageRun.objects.filter(release_id=release_id, name__in=SHIPPED).update(status="succeeded", attempt=1)
    Release.objects.filter(pk=release_id).update(status="approved")
    StageRun.objects.filter(release_id=release_id, name="deploy_staging").update(status="queued",
                                                                                 queued_at=timezone.now())
    drill_worker("deploy-a")
    drill_worker("deploy-b")
    yield release_id
    stop_serving()


def staging_deploys(release_id: int) -> int:
    return TrafficChange.objects.filter(service__environment__name="staging", action="deploy",
                                        reason=f"release #{release_id}").count()


def test_a_deploy_stage_sent_twice_or_run_again_after_a_lost_worker_deploys_once(approved_release, tmp_path):
    stage = StageRun.objects.get(release_id=approved_release, name="deploy_staging")
    assert pipeline.send(stage) and pipeline.send(stage)
    release = wait_for_status(approved_release, "awaiting_approval", "failed", timeout=90)
    assert release.status == "awaiting_approval", release.failure_reason
    stage.refresh_from_db()
    assert (stage.status, stage.attempt) == ("succeeded", 1)
    assert AuditEvent.objects.filter(release_id=approved_release, action="stage.start",
                                     subject="stage deploy_staging").count() == 1
    assert staging_deploys(approved_release) == 1
    assert list(Deployment.objects.filter(release_id=approved_release)
                .values_list("service__environment__name", "role")) == [
        ("staging", "active")]
    logs = "".join(p.read_text() for p in tmp_path.glob("deploy-*.log"))
    # The second message is refused: "is running on <host>" while the first run holds the stage, or
    # "is succeeded; it cannot start" when it arrives after that run finished.
    refused = re.search(rf"not running stage deploy_staging of release {approved_release}: stage deploy_staging "
                        rf"of release #{approved_release} is (running on |succeeded; it cannot start)", logs)
    assert refused is not None, logs[-3000:]

    # Run again as if its worker had been killed after the traffic moved, before the stage was recorded done:
    # the sweeper sends it again, and the new run finds the release serving.
    StageRun.objects.filter(pk=stage.pk).update(status="running", claim="lost-run", finished_at=None,
                                                heartbeat_at=timezone.now() - timedelta(minutes=5))
    StageRun.objects.filter(release_id=approved_release, name="production_gate").update(status="pending")
    Release.objects.filter(pk=approved_release).update(status="shipping")
    with Sweeper() as sweeper:
        release = wait_for_status(approved_release, "awaiting_approval", "failed", timeout=90)
    assert release.status == "awaiting_approval", release.failure_reason
    assert sweeper.totals["retried"] == 1
    stage.refresh_from_db()
    assert (stage.status, stage.attempt) == ("succeeded", 2)
    assert "already serves (active, 100%" in stage.log and "since an earlier attempt; not started again" in stage.log
    assert staging_deploys(approved_release) == 1
    assert Deployment.objects.filter(release_id=approved_release).count() == 1


def test_a_run_that_lost_its_stage_can_neither_move_traffic_nor_write_its_log(users, own_broker):
    release_id = post_build(users)
    StageRun.objects.filter(release_id=release_id, name="deploy_staging").update(status="running", claim="new-run")
    stale = StageRun.objects.get(release_id=release_id, name="deploy_staging")
    stale.claim = "old-run"
    ctx = StageContext(release=Release.objects.get(pk=release_id), stage=stale, device="cpu")
    busy = f"stage deploy_staging of release #{release_id} is held by another run now"
    with pytest.raises(StageBusy, match=busy), transaction.atomic():
        ctx.hold_claim()
    ctx.log("the old run's line")
    assert StageRun.objects.get(pk=stale.pk).log == ""
