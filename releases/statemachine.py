"""The one state machine of a release and of its stages.

Every change of status goes through here: it is checked against the allowed transitions, done in
a transaction holding the row lock, and recorded as an AuditEvent with the state before and after.
"""

from datetime import timedelta
from uuid import uuid4

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from releases.actors import Actor
from releases.models import AuditEvent, Release, StageRun
from releases.models.pipeline import ReleaseStatus as RS
from releases.models.pipeline import StageStatus as SS
from releases.redact import without_paths

# action → {from status: to status}
RELEASE_TRANSITIONS: dict[str, dict[str, str]] = {
    "start": {RS.PENDING: RS.RUNNING},
    "await_approval": {RS.RUNNING: RS.AWAITING_APPROVAL, RS.SHIPPING: RS.AWAITING_APPROVAL},
    "approve": {RS.AWAITING_APPROVAL: RS.APPROVED, RS.RUNNING: RS.APPROVED},
    "reject": {RS.AWAITING_APPROVAL: RS.REJECTED},
    "ship": {RS.APPROVED: RS.SHIPPING},
    "release": {RS.SHIPPING: RS.RELEASED},
    "roll_back": {RS.RELEASED: RS.ROLLED_BACK, RS.SHIPPING: RS.ROLLED_BACK},
    "fail": {s: RS.FAILED for s in (RS.PENDING, RS.RUNNING, RS.APPROVED, RS.SHIPPING)},
    "cancel": {s: RS.CANCELLED for s in (RS.PENDING, RS.RUNNING, RS.AWAITING_APPROVAL)},
}
TERMINAL = {RS.RELEASED, RS.ROLLED_BACK, RS.REJECTED, RS.FAILED, RS.CANCELLED}

STAGE_TRANSITIONS: dict[str, dict[str, str]] = {
    # WAITING → QUEUED: a canary stage that waited for a shadow verdict goes on (monitoring/shadowing.py).
    "queue": {SS.PENDING: SS.QUEUED, SS.FAILED: SS.QUEUED, SS.RUNNING: SS.QUEUED, SS.WAITING: SS.QUEUED},
    # RUNNING → RUNNING: a redelivered message takes over a run that has gone silent (see transition_stage).
    "start": {SS.QUEUED: SS.RUNNING, SS.RUNNING: SS.RUNNING},
    "wait": {SS.RUNNING: SS.WAITING},
    "succeed": {SS.RUNNING: SS.SUCCEEDED, SS.WAITING: SS.SUCCEEDED},
    "fail": {s: SS.FAILED for s in (SS.PENDING, SS.QUEUED, SS.RUNNING, SS.WAITING)},
    "skip": {SS.PENDING: SS.SKIPPED, SS.QUEUED: SS.SKIPPED},
}


class TransitionError(Exception):
    """The transition is not allowed from the current state; the API answers 409."""


class StageBusy(TransitionError):
    """Another run holds the stage: a duplicate or redelivered message, or a run the sweeper gave up on."""


def heartbeat_fresh(stage: StageRun) -> bool:
    """Whether the run holding this stage gave a sign of life within the heartbeat timeout."""
    timeout = timedelta(seconds=settings.SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S)
    return stage.heartbeat_at is not None and timezone.now() - stage.heartbeat_at < timeout


def locked_release(release_id: int) -> Release:
    """The release row, locked until the surrounding transaction ends (with its version and model, which
    its audit events name, read but not locked)."""
    return Release.objects.select_for_update(of=("self",)).select_related("version__model").get(pk=release_id)


def transition_release(release_id: int, action: str, *, actor: Actor, reason: str = "",
                       **fields: object) -> Release:
    """Move a release along `action`, setting `fields` too; raises TransitionError if not allowed."""
    allowed = RELEASE_TRANSITIONS[action]
    with transaction.atomic():
        release = locked_release(release_id)
        if release.status not in allowed:
            raise TransitionError(f"release #{release_id} is {release.status}; it cannot {action.replace('_', ' ')}")
        before = {"status": release.status}
        release.status = allowed[release.status]
        if action == "fail" and reason:
            release.failure_reason = without_paths(reason)
        for name, value in fields.items():
            setattr(release, name, value)
        release.save()
        after = {"status": release.status} | {k: _jsonable(v) for k, v in fields.items()}
        record(actor, f"release.{action}", release=release, subject=str(release), before=before, after=after,
               reason=reason)
        return release


def transition_stage(stage_id: int, action: str, *, actor: Actor, reason: str = "", holder: str | None = None,
                     note: str = "", **fields: object) -> StageRun:
    """Move one stage along `action` under the release's lock; raises TransitionError if not allowed.
    `note`: a line for the stage's log (which queue it went to, and why).

    "start" gives the stage a new claim token, and refuses (StageBusy) a running stage whose run is
    alive; a run passes its claim as `holder` to record its outcome, refused (StageBusy) once another run
    holds the stage. A failed stage is held by no run.
    """
    allowed = STAGE_TRANSITIONS[action]
    # No savepoint inside a caller's transaction (two queries less per transition): nothing catches a
    # failed transition inside the transaction that holds it, so it undoes that whole transaction.
    with transaction.atomic(savepoint=False):
        # Lock the release first (found through the stage: one query), then read the stage under the lock.
        release = Release.objects.select_for_update(of=("self",)).get(stages__id=stage_id)
        stage = StageRun.objects.get(pk=stage_id)
        stage.release = release
        if holder is not None and stage.claim != holder:
            raise StageBusy(f"stage {stage.name} of release #{release.pk} is held by another run now")
        if action == "start" and stage.status == SS.RUNNING and heartbeat_fresh(stage):
            raise StageBusy(f"stage {stage.name} of release #{release.pk} is running on {stage.worker_host}")
        if stage.status not in allowed:
            raise TransitionError(f"stage {stage.name} of release #{release.pk} is {stage.status}; "
                                  f"it cannot {action}")
        before = {"status": stage.status, "attempt": stage.attempt}
        stage.status = allowed[stage.status]
        now = timezone.now()
        if action == "queue":
            stage.queued_at, stage.error, stage.claim, stage.heartbeat_at = now, "", "", None
        elif action == "start":
            stage.attempt += 1
            stage.claim, stage.heartbeat_at = uuid4().hex, now
            stage.started_at, stage.finished_at, stage.progress, stage.error = now, None, 0, ""
        elif action in ("succeed", "fail", "skip"):
            stage.finished_at = now
            if action == "succeed":
                stage.progress = 100
            if action == "fail":
                stage.error, stage.claim = without_paths(reason), ""
        for name, value in fields.items():
            setattr(stage, name, value)
        if note:
            stage.add_log(note)
        stage.save()
        after = {"status": stage.status, "attempt": stage.attempt} | {
            k: _jsonable(v) for k, v in fields.items() if k not in ("log",)}
        record(actor, f"stage.{action}", release=release, subject=f"stage {stage.name}", before=before,
               after=after, reason=reason)
        return stage


def record(actor: Actor, action: str, *, release: Release | None = None, subject: str = "",
           before: dict | None = None, after: dict | None = None, reason: str = "") -> None:
    """An audit event for something that is not a status change (a build received, an approval)."""
    AuditEvent.objects.create(actor=actor.user, actor_label=actor.label, action=action, release=release,
                              subject=subject, before=before or {}, after=after or {}, reason=without_paths(reason))


def _jsonable(value: object) -> object:
    if hasattr(value, "pk"):
        return value.pk
    if isinstance(value, str | int | float | bool | type(None) | list | dict):
        return value
    return str(value)
