"""The one state machine of a release and of its stages.

Every change of status goes through here: it is checked against the allowed transitions, done in
a transaction holding the row lock, and recorded as an AuditEvent with the state before and after.
"""

from django.db import transaction
from django.utils import timezone

from releases.actors import Actor
from releases.models import AuditEvent, Release, StageRun
from releases.models.pipeline import ReleaseStatus as RS
from releases.models.pipeline import StageStatus as SS

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
    "queue": {SS.PENDING: SS.QUEUED, SS.FAILED: SS.QUEUED, SS.RUNNING: SS.QUEUED},
    "start": {SS.QUEUED: SS.RUNNING, SS.RUNNING: SS.RUNNING},
    "wait": {SS.RUNNING: SS.WAITING},
    "succeed": {SS.RUNNING: SS.SUCCEEDED, SS.WAITING: SS.SUCCEEDED},
    "fail": {s: SS.FAILED for s in (SS.PENDING, SS.QUEUED, SS.RUNNING, SS.WAITING)},
    "skip": {SS.PENDING: SS.SKIPPED, SS.QUEUED: SS.SKIPPED},
}


class TransitionError(Exception):
    """The transition is not allowed from the current state; the API answers 409."""


def locked_release(release_id: int) -> Release:
    """The release row, locked until the surrounding transaction ends."""
    return Release.objects.select_for_update().get(pk=release_id)


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
            release.failure_reason = reason
        for name, value in fields.items():
            setattr(release, name, value)
        release.save()
        after = {"status": release.status} | {k: _jsonable(v) for k, v in fields.items()}
        record(actor, f"release.{action}", release=release, subject=str(release), before=before, after=after,
               reason=reason)
        return release


def transition_stage(stage_id: int, action: str, *, actor: Actor, reason: str = "",
                     **fields: object) -> StageRun:
    """Move one stage along `action` under the release's lock; raises TransitionError if not allowed."""
    allowed = STAGE_TRANSITIONS[action]
    with transaction.atomic():
        stage = StageRun.objects.select_related("release").get(pk=stage_id)
        release = locked_release(stage.release_id)
        stage.refresh_from_db()
        if stage.status not in allowed:
            raise TransitionError(f"stage {stage.name} of release #{release.pk} is {stage.status}; "
                                  f"it cannot {action}")
        before = {"status": stage.status, "attempt": stage.attempt}
        stage.status = allowed[stage.status]
        now = timezone.now()
        if action == "queue":
            stage.queued_at, stage.error = now, ""
        elif action == "start":
            stage.attempt += 1
            stage.started_at, stage.finished_at, stage.progress, stage.error = now, None, 0, ""
        elif action in ("succeed", "fail", "skip"):
            stage.finished_at = now
            if action == "succeed":
                stage.progress = 100
            if action == "fail":
                stage.error = reason
        for name, value in fields.items():
            setattr(stage, name, value)
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
                              subject=subject, before=before or {}, after=after or {}, reason=reason)


def _jsonable(value: object) -> object:
    if hasattr(value, "pk"):
        return value.pk
    if isinstance(value, str | int | float | bool | type(None) | list | dict):
        return value
    return str(value)
