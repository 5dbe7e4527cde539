"""Manual approvals: N approvers of the policy's group; the author of a build never approves it."""

from django.db import transaction

from releases import pipeline
from releases.actors import Actor
from releases.models import Approval, Release, StageRun
from releases.models.pipeline import ReleaseStatus
from releases.roles import ADMIN, APPROVER, has_role
from releases.statemachine import (
    TransitionError,
    locked_release,
    record,
    transition_release,
    transition_stage,
)


class NotAllowed(Exception):
    """The user may not take this decision; the API answers 403 with the reason."""


def approver_group(release: Release) -> str:
    group = release.version.model.policy.approver_group
    return group.name if group else APPROVER


def why_not(user, release: Release) -> str | None:  # noqa: ANN001
    """Why this user cannot approve this release, or None if they can."""
    if not user.is_authenticated:
        return "you are not logged in"
    if release.version.author_id == user.pk:
        return "you are the author of this build; someone else must approve it"
    group = approver_group(release)
    if not has_role(user, group, ADMIN):
        return f"you are not in the '{group}' group"
    return None


def required(release: Release) -> int:
    return release.version.model.policy.required_approvals


def decide(release_id: int, user, decision: str, comment: str, *, token_name: str | None = None) -> Approval:  # noqa: ANN001
    """Record one person's decision at the release gate, and move the release on when it is settled."""
    actor = Actor.person(user, token_name)
    with transaction.atomic():
        release = locked_release(release_id)
        if release.status != ReleaseStatus.AWAITING_APPROVAL:
            raise TransitionError(f"release #{release_id} is {release.status}, not awaiting approval")
        reason = why_not(user, release)
        if reason:
            raise NotAllowed(reason)
        if Approval.objects.filter(release=release, gate="release", user=user).exists():
            raise TransitionError(f"{user.get_username()} has already decided on release #{release_id}")
        approval = Approval.objects.create(release=release, gate="release", user=user, decision=decision,
                                           comment=comment)
        record(actor, f"approval.{decision}", release=release, subject=str(release),
               after={"decision": decision, "comment": comment})
        gate = StageRun.objects.get(release=release, name="gate")
        if decision == Approval.Decision.REJECT:
            why = f"rejected by {user.get_username()}" + (f": {comment}" if comment else "")
            transition_stage(gate.pk, "fail", actor=actor, reason=why)
            transition_release(release_id, "reject", actor=actor, reason=why, failure_reason=why)
        elif approvals_count(release) >= required(release):
            transition_stage(gate.pk, "succeed", actor=actor, step="approved")
            transition_release(release_id, "approve", actor=actor)
            pipeline.advance(release_id, actor)
        return approval


def approvals_count(release: Release) -> int:
    return Approval.objects.filter(release=release, gate="release", decision=Approval.Decision.APPROVE).count()


def waiting_on(release: Release) -> int:
    """How many more approvals the release needs."""
    if release.status != ReleaseStatus.AWAITING_APPROVAL:
        return 0
    return max(0, required(release) - approvals_count(release))

