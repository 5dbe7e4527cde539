"""Runs one stage of a release on this worker: start it, run its function, record the outcome."""

import logging
import socket
import traceback

from django.db import InterfaceError, OperationalError, connection, transaction

from monitoring.shadowing import waiting_step
from releases import pipeline
from releases.actors import Actor
from releases.models import Release, StageRun
from releases.models.pipeline import ReleaseStatus, StageStatus
from releases.statemachine import (
    TERMINAL,
    StageBusy,
    TransitionError,
    locked_release,
    transition_release,
    transition_stage,
)
from workers.context import APPROVED, SHADOW, WAIT, WATCH, StageContext, StageFailed
from workers.gpu import gpu_slot
from workers.heartbeat import Heartbeat
from workers.stages import stage_function

log = logging.getLogger(__name__)
DATABASE_GONE = (OperationalError, InterfaceError)
DONE = {StageStatus.SUCCEEDED, StageStatus.SKIPPED, StageStatus.WAITING, StageStatus.FAILED}
# A stage that starts moves its release on: a new release runs, an approved one ships.
STARTS = {ReleaseStatus.PENDING: "start", ReleaseStatus.APPROVED: "ship"}


def run_stage(release_id: int, name: str) -> None:
    """Run a stage once: a duplicate or redelivered message for a stage whose run is alive does nothing."""
    actor = Actor.worker()
    stage = StageRun.objects.select_related("release").filter(release_id=release_id, name=name).first()
    if stage is None or stage.status in DONE or stage.release.status in TERMINAL:
        log.info("stage %s of release %s is already settled; nothing to do", name, release_id)
        return
    from workers.ml.runtime import detect_device  # imported late: only workers load the ML stack

    device = detect_device() if pipeline.STAGE_BY_NAME[name].accelerated else "cpu"
    try:
        with transaction.atomic():  # a stage that may not start undoes its release's move too
            status = locked_release(release_id).status
            if status in STARTS:
                transition_release(release_id, STARTS[ReleaseStatus(status)], actor=actor)
            stage = transition_stage(stage.pk, "start", actor=actor, worker_host=socket.gethostname(),
                                     device=device)
    except TransitionError as exc:
        log.info("not running stage %s of release %s: %s", name, release_id, exc)
        return
    release = Release.objects.select_related("version__model__policy", "version__artifact",
                                             "version__eval_data", "chosen_artifact").get(pk=release_id)
    heartbeat = Heartbeat(stage.pk, stage.claim)
    ctx = StageContext(release=release, stage=stage, device=device, superseded=heartbeat.lost)
    try:
        run_and_record(ctx, heartbeat, actor)
    except StageBusy as exc:
        log.warning("the outcome of stage %s of release %s is dropped: %s", name, release_id, exc)
    except DATABASE_GONE as exc:
        # The database restarted under the stage: on a new connection, the stage is run again.
        log.warning("stage %s of release %s lost its database connection: %s", name, release_id, exc)
        connection.close()
        pipeline.retry_or_fail(stage, actor, f"the database connection broke ({type(exc).__name__})",
                               holder=stage.claim)


def run_and_record(ctx: StageContext, heartbeat: Heartbeat, actor: Actor) -> None:
    """Run the stage function while the heartbeat beats, and record its outcome under this run's claim."""
    stage = ctx.stage
    try:
        with heartbeat, gpu_slot(ctx.device):
            outcome = stage_function(stage.name, ctx.model.task)(ctx)
    except (StageBusy, *DATABASE_GONE):
        raise
    except StageFailed as exc:
        pipeline.fail_stage(stage, actor, str(exc), holder=stage.claim)
    except Exception as exc:
        log.exception("stage %s of release %s crashed", stage.name, stage.release_id)
        ctx.log(traceback.format_exc())
        pipeline.fail_stage(stage, actor, f"{type(exc).__name__}: {exc}", holder=stage.claim)
    else:
        settle(stage, actor, outcome)


def settle(stage: StageRun, actor: Actor, outcome: str | None) -> None:
    """Record what the stage function returned, if this run still holds the stage."""
    with transaction.atomic():
        if outcome == WAIT:
            transition_stage(stage.pk, "wait", actor=actor, holder=stage.claim, step="waiting for approval")
            transition_release(stage.release_id, "await_approval", actor=actor)
            return
        if outcome == WATCH:
            transition_stage(stage.pk, "wait", actor=actor, holder=stage.claim, step="canary analysis")
            return
        if outcome == SHADOW:
            transition_stage(stage.pk, "wait", actor=actor, holder=stage.claim, step=waiting_step(stage.release_id))
            return
        transition_stage(stage.pk, "succeed", actor=actor, holder=stage.claim)
        if outcome == APPROVED:
            transition_release(stage.release_id, "approve", actor=actor, reason="no manual approval required")
        pipeline.advance(stage.release_id, actor)


