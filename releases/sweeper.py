"""Finds stages the pipeline lost track of, from the database alone.

- queued but never picked up (the broker was down, or lost the message): sent again;
- running past the stage time limit (its worker died): failed with the reason, or sent again when
  the stage may be retried.
Runs every SWEEP_EVERY_S seconds on Celery beat; safe to run from several processes at once.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from releases import pipeline
from releases.actors import Actor
from releases.models import StageRun
from releases.models.pipeline import StageStatus
from releases.statemachine import TransitionError, transition_release, transition_stage

log = logging.getLogger(__name__)
RESEND_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 3


def sweep() -> dict[str, int]:
    actor = Actor.system("sweeper")
    now = timezone.now()
    resent = 0
    for stage in StageRun.objects.filter(status=StageStatus.QUEUED, queued_at__lt=now - RESEND_AFTER):
        StageRun.objects.filter(pk=stage.pk).update(queued_at=now)
        resent += pipeline.send(stage)
    stuck = StageRun.objects.filter(status=StageStatus.RUNNING,
                                    started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60))
    failed = retried = 0
    for stage in stuck:
        try:
            with transaction.atomic():
                if stage.attempt < MAX_ATTEMPTS:
                    pipeline.enqueue(stage, actor)
                    retried += 1
                    continue
                reason = (f"no word from worker {stage.worker_host or '?'} for longer than the stage time limit "
                          f"({settings.CELERY_TASK_TIME_LIMIT} s), {stage.attempt} attempts")
                transition_stage(stage.pk, "fail", actor=actor, reason=reason)
                transition_release(stage.release_id, "fail", actor=actor, reason=f"{stage.name}: {reason}")
                failed += 1
        except TransitionError as exc:
            log.warning("sweeper: %s", exc)
    return {"resent": resent, "retried": retried, "failed": failed}
