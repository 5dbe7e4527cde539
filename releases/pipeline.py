"""The pipeline plan: which stages a release runs, on which queue, and how it moves on.

Stages run on Celery workers (workers/); the web only sends ids, by task name, after commit, so it
never imports the ML code.
"""

import logging
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.presence import gone_after, gpu_worker
from releases.actors import Actor
from releases.models import Release, StageRun
from releases.models.pipeline import ReleaseStatus, StageStatus
from releases.statemachine import (
    TERMINAL,
    TransitionError,
    locked_release,
    record,
    transition_release,
    transition_stage,
)

RUN_STAGE_TASK = "workers.tasks.run_stage"
GPU_QUEUE = "gpu"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    name: str
    accelerated: bool = False  # may run on a GPU: its queue is chosen when it is queued (route)
    queue: str = "cpu"


STAGES: list[StageSpec] = [
    StageSpec("validate"),
    StageSpec("convert"),
    StageSpec("compress", accelerated=True),
    StageSpec("evaluate", accelerated=True),
    StageSpec("gate"),
    StageSpec("package", queue="deploy"),
    StageSpec("deploy_staging", queue="deploy"),
    StageSpec("production_gate"),
    StageSpec("canary", queue="deploy"),
]
STAGE_BY_NAME = {spec.name: spec for spec in STAGES}
# The stage that changes what serves in each environment while it runs.
DEPLOY_STAGE_OF = {"staging": "deploy_staging", "production": "canary"}


def create_stages(release: Release) -> None:
    StageRun.objects.bulk_create(
        StageRun(release=release, name=spec.name, position=i, queue=spec.queue)
        for i, spec in enumerate(STAGES)
    )


def route(name: str) -> tuple[str, str]:
    """The queue a stage goes to when it is queued now, and why (said only for a stage that may run on a
    GPU). With SLIPWAY_ACCELERATED_QUEUE=auto, such a stage goes to the gpu queue while a worker that
    consumes it and announced a CUDA device is present (fleet.presence), else to the cpu queue."""
    spec = STAGE_BY_NAME[name]
    if not spec.accelerated:
        return spec.queue, ""
    mode = settings.SLIPWAY_ACCELERATED_QUEUE
    if mode != "auto":
        return mode, f"on the {mode} queue: SLIPWAY_ACCELERATED_QUEUE={mode}"
    worker = gpu_worker(GPU_QUEUE)
    if worker is None:
        return "cpu", f"no GPU worker seen in the last {gone_after().total_seconds():g} s: running on CPU"
    seen_s = (timezone.now() - worker.last_seen_at).total_seconds()
    return GPU_QUEUE, (f"GPU worker {worker.name} (CUDA devices: {len(worker.cuda_devices)}) seen {seen_s:.0f} s "
                       f"ago: on the {GPU_QUEUE} queue")


def send(stage: StageRun) -> bool:
    """Hand a queued stage to the broker. A broker that is down loses nothing: the stage stays queued in
    the database and the sweeper (releases.sweeper) sends it again."""
    try:
        current_app.send_task(RUN_STAGE_TASK, kwargs={"release_id": stage.release_id, "stage": stage.name},
                              queue=stage.queue)
    except Exception:
        log.exception("could not send stage %s of release %s to the broker; it stays queued",
                      stage.name, stage.release_id)
        return False
    return True


def resend(stage: StageRun, actor: Actor) -> bool:
    """Send again a stage that no worker took, to the queue it would go to now: a stage left on the gpu
    queue by a GPU worker that went away goes to the CPU workers."""
    queue, why = route(stage.name)
    if queue != stage.queue:
        with transaction.atomic():
            release = locked_release(stage.release_id)
            stage.refresh_from_db()
            if stage.status != StageStatus.QUEUED:
                return False  # a worker took it meanwhile
            before = stage.queue
            stage.queue, stage.step = queue, why
            stage.add_log(why)
            stage.save(update_fields=["queue", "step", "log"])
            record(actor, "stage.route", release=release, subject=f"stage {stage.name}",
                   before={"queue": before}, after={"queue": queue}, reason=why)
    return send(stage)


def enqueue(stage: StageRun, actor: Actor, reason: str = "", *, holder: str | None = None) -> None:
    """Mark the stage queued on the queue it goes to now (route) and send it there once the transaction
    commits. `holder`: the claim of the run that queues it again (see transition_stage)."""
    queue, why = route(stage.name)
    queued = transition_stage(stage.pk, "queue", actor=actor, reason=reason, holder=holder, queue=queue, step=why,
                              note=why)
    transaction.on_commit(lambda: send(queued))


def start(release: Release, actor: Actor) -> None:
    enqueue(release.stages.order_by("position")[0], actor)


def advance(release_id: int, actor: Actor) -> StageRun | None:
    """After a stage succeeded: queue the next pending stage; with none left, a shipping release is released."""
    nxt = StageRun.objects.filter(release_id=release_id, status=StageStatus.PENDING).order_by("position").first()
    if nxt is not None:
        enqueue(nxt, actor)
    elif Release.objects.filter(pk=release_id, status=ReleaseStatus.SHIPPING).exists():
        transition_release(release_id, "release", actor=actor)
    return nxt


def cancel(release_id: int, actor: Actor, reason: str) -> Release:
    """Stop a release before it ships: the stages not started are skipped, a waiting gate closes."""
    with transaction.atomic():
        release = transition_release(release_id, "cancel", actor=actor, reason=reason, failure_reason=reason)
        for stage in release.stages.filter(status__in=[StageStatus.PENDING, StageStatus.QUEUED]):
            transition_stage(stage.pk, "skip", actor=actor)
        for stage in release.stages.filter(status=StageStatus.WAITING):
            transition_stage(stage.pk, "fail", actor=actor, reason=f"cancelled: {reason}")
        return release


def fail_stage(stage: StageRun, actor: Actor, reason: str, *, holder: str | None = None) -> None:
    """The stage failed: so does its release, with the reason, and the stages after it are skipped.
    `holder`: the claim of the run that fails it (refused with StageBusy once another run holds it)."""
    with transaction.atomic():
        transition_stage(stage.pk, "fail", actor=actor, reason=reason, holder=holder)
        for later in StageRun.objects.filter(release_id=stage.release_id, status=StageStatus.PENDING):
            transition_stage(later.pk, "skip", actor=actor)
        try:
            transition_release(stage.release_id, "fail", actor=actor, reason=f"{stage.name}: {reason}")
        except TransitionError:
            log.warning("release %s could not be failed from its current status", stage.release_id)


def retry_or_fail(stage: StageRun, actor: Actor, reason: str, *, holder: str | None = None) -> str:
    """A run of the stage was lost (its worker died, its database connection broke): the stage is queued
    again while attempts are left (SLIPWAY_STAGE_MAX_ATTEMPTS), else it fails with the reason.
    Returns "retried" or "failed"."""
    with transaction.atomic():
        release = locked_release(stage.release_id)
        stage.refresh_from_db()
        if stage.attempt < settings.SLIPWAY_STAGE_MAX_ATTEMPTS and release.status not in TERMINAL:
            # routed afresh: a GPU worker that died leaves the next attempt to the CPU
            enqueue(stage, actor, f"{reason}; attempt {stage.attempt + 1} follows", holder=holder)
            return "retried"
        fail_stage(stage, actor, f"{reason}, {stage.attempt} attempts", holder=holder)
        return "failed"
