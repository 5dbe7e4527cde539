"""Finds stages the pipeline lost track of, and stops of servers nobody confirmed, from the database alone.

- queued but never picked up (the broker was down, or lost the message, or the GPU worker it was
  queued for went away): sent again after SLIPWAY_STAGE_RESEND_AFTER_S, to the queue it goes to now;
- running without a heartbeat for SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S (its worker died), or past the
  stage time limit: sent again, to the queue it goes to now, while attempts are left
  (SLIPWAY_STAGE_MAX_ATTEMPTS), else failed with the reason. The old run's claim is dropped, so nothing
  it records later counts;
- a deployment taken out of service whose instance no worker confirmed stopped within
  SLIPWAY_STAGE_RESEND_AFTER_S of its stop being sent (the broker lost it, or the stop failed): its stop
  is sent again, until a worker confirms the instance gone.
(workers/shadowing.py's `resend_starts` does the same for shadow servers' starts, beside this sweep; and
workers/orphans.py stops the servers no record references, older than `over_time_limit`, on a deploy worker.)
Runs every SLIPWAY_SWEEP_EVERY_S seconds on Celery beat; safe to run from several processes at once.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from releases import deploys, pipeline
from releases.actors import Actor
from releases.models import Deployment, StageRun
from releases.models.pipeline import StageStatus
from releases.statemachine import TransitionError, heartbeat_fresh, locked_release

log = logging.getLogger(__name__)


def sweep() -> dict[str, int]:
    actor = Actor.system("sweeper")
    now = timezone.now()
    resent = 0
    sent_before = resend_before(now)
    for stage in StageRun.objects.filter(status=StageStatus.QUEUED, queued_at__lt=sent_before):
        if renew(StageRun.objects.filter(pk=stage.pk, status=StageStatus.QUEUED), "queued_at", stage.queued_at, now):
            resent += pipeline.resend(stage, actor)
    silent = now - timedelta(seconds=settings.SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S)
    stuck = StageRun.objects.filter(Q(heartbeat_at__lt=silent) | Q(started_at__lt=now - over_time_limit()),
                                    status=StageStatus.RUNNING)
    failed = retried = 0
    for stage in stuck:
        try:
            outcome = settle_stuck(stage.pk, actor)
        except TransitionError as exc:
            log.warning("sweeper: %s", exc)
            continue
        retried += outcome == "retried"
        failed += outcome == "failed"
    return {"resent": resent, "retried": retried, "failed": failed, "stops_resent": resend_stops(sent_before)}


def resend_stops(sent_before: datetime) -> int:
    """Send again each stop that was sent before `sent_before` and that no worker confirmed."""
    now, resent = timezone.now(), 0
    owed = Deployment.objects.filter(role=Deployment.Role.STOPPED, stopped_at=None, stop_sent_at__lt=sent_before)
    for deployment_id, sent_at in owed.values_list("pk", "stop_sent_at"):
        if renew(Deployment.objects.filter(pk=deployment_id, stopped_at=None), "stop_sent_at", sent_at, now):
            resent += deploys.send_stop(deployment_id)
    return resent


def resend_before(now: datetime) -> datetime:
    """What was sent before this and is still owed is taken as lost (SLIPWAY_STAGE_RESEND_AFTER_S)."""
    return now - timedelta(seconds=settings.SLIPWAY_STAGE_RESEND_AFTER_S)


def renew(row: QuerySet[Any], field: str, seen: datetime | None, now: datetime, **also: Any) -> bool:
    """Set the row's `field` (when it was last sent) to `now`, and the `also` fields with it, if it still holds
    `seen`, the value the caller read: True only for the caller whose update matched. Only that caller sends
    it again, so two sweepers at once send it once."""
    return row.filter(**{field: seen}).update(**{field: now}, **also) > 0


def over_time_limit() -> timedelta:
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def why_stuck(stage: StageRun) -> str | None:
    """Why the run holding this running stage is taken as lost, or None if it is not."""
    worker = stage.worker_host or "?"
    if stage.started_at is not None and timezone.now() - stage.started_at > over_time_limit():
        limit = settings.CELERY_TASK_TIME_LIMIT
        return f"no word from worker {worker} for longer than the stage time limit ({limit} s)"
    if stage.heartbeat_at is not None and not heartbeat_fresh(stage):
        return (f"worker {worker} went silent: no heartbeat for "
                f"{(timezone.now() - stage.heartbeat_at).total_seconds():.0f} s "
                f"(timeout {settings.SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S:g} s)")
    return None


def settle_stuck(stage_id: int, actor: Actor) -> str:
    """Send a lost stage again while attempts are left, else fail it and its release."""
    with transaction.atomic():
        stage = StageRun.objects.get(pk=stage_id)
        locked_release(stage.release_id)
        stage.refresh_from_db()
        reason = why_stuck(stage) if stage.status == StageStatus.RUNNING else None
        if reason is None:
            return "alive"  # its run renewed its heartbeat or finished meanwhile
        return pipeline.retry_or_fail(stage, actor, reason)
