"""Runs one stage of a release on this worker: start it, run its function, record the outcome."""

import logging
import socket
import traceback

from django.db import transaction

from releases import pipeline
from releases.actors import Actor
from releases.models import Release, StageRun
from releases.models.pipeline import ReleaseStatus, StageStatus
from releases.statemachine import TERMINAL, TransitionError, transition_release, transition_stage
from workers.context import APPROVED, WAIT, StageContext, StageFailed
from workers.stages import STAGE_FUNCTIONS

log = logging.getLogger(__name__)
DONE = {StageStatus.SUCCEEDED, StageStatus.SKIPPED, StageStatus.WAITING, StageStatus.FAILED}
# A stage that starts moves its release on: a new release runs, an approved one ships.
STARTS = {ReleaseStatus.PENDING: "start", ReleaseStatus.APPROVED: "ship"}


def run_stage(release_id: int, name: str) -> None:
    actor = Actor.worker()
    stage = StageRun.objects.select_related("release").filter(release_id=release_id, name=name).first()
    if stage is None or stage.status in DONE or stage.release.status in TERMINAL:
        log.info("stage %s of release %s is already settled; nothing to do", name, release_id)
        return
    from workers.ml.runtime import detect_device  # imported late: only workers load the ML stack

    device = detect_device() if pipeline.STAGE_BY_NAME[name].accelerated else "cpu"
    with transaction.atomic():
        if stage.release.status in STARTS:
            transition_release(release_id, STARTS[stage.release.status], actor=actor)
        stage = transition_stage(stage.pk, "start", actor=actor, worker_host=socket.gethostname(), device=device)
    release = Release.objects.select_related("version__model__policy", "version__artifact",
                                             "version__eval_data", "chosen_artifact").get(pk=release_id)
    ctx = StageContext(release=release, stage=stage, device=device)
    try:
        outcome = STAGE_FUNCTIONS[name](ctx)
    except StageFailed as exc:
        fail(stage, actor, str(exc))
        return
    except Exception as exc:
        log.exception("stage %s of release %s crashed", name, release_id)
        ctx.log(traceback.format_exc())
        fail(stage, actor, f"{type(exc).__name__}: {exc}")
        return
    if outcome == WAIT:
        with transaction.atomic():
            transition_stage(stage.pk, "wait", actor=actor, step="waiting for approval")
            transition_release(release_id, "await_approval", actor=actor)
        return
    with transaction.atomic():
        transition_stage(stage.pk, "succeed", actor=actor)
        if outcome == APPROVED:
            transition_release(release_id, "approve", actor=actor, reason="no manual approval required")
        pipeline.advance(release_id, actor)


def fail(stage: StageRun, actor: Actor, reason: str) -> None:
    """The stage failed: so does its release, with the reason, and the stages after it are skipped."""
    with transaction.atomic():
        transition_stage(stage.pk, "fail", actor=actor, reason=reason)
        for later in StageRun.objects.filter(release_id=stage.release_id, status=StageStatus.PENDING):
            transition_stage(later.pk, "skip", actor=actor)
        try:
            transition_release(stage.release_id, "fail", actor=actor, reason=f"{stage.name}: {reason}")
        except TransitionError:
            log.warning("release %s could not be failed from its current status", stage.release_id)
