"""Manual approvals: N approvers of the policy's group; the author of a build never approves it."""

from django.db import transaction

from releases import pipeline
from releases.actors import Actor
from releases.models import Approval, Environment, Release, StageRun
from releases.models.pipeline import ReleaseStatus, StageStatus
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


def already_decided(user, release: Release, gate: str | None) -> bool:  # noqa: ANN001
    return any(a.user_id == user.pk and a.gate == gate for a in release.approvals.all())


def why_no_decision(user, release: Release, gate: str | None) -> str | None:  # noqa: ANN001
    """Why this user cannot approve or reject this release at `gate` now (what the page shows), or None."""
    reason = why_not(user, release)
    if reason is None and already_decided(user, release, gate):
        return f"you have already decided at its {gate} gate"
    return reason


# The stage that waits for people, by gate, and how many approvals each gate's policy asks for.
GATE_STAGES = {"release": "gate", "production": "production_gate"}


def waiting_gate(release: Release) -> str | None:
    """Which gate the release waits at, if any."""
    if release.status != ReleaseStatus.AWAITING_APPROVAL:
        return None
    names = {s.name for s in release.stages.all() if s.status == StageStatus.WAITING}
    return next((gate for gate, stage in GATE_STAGES.items() if stage in names), None)


def required(release: Release, gate: str = "release") -> int:
    """Approvals the gate needs: the policy's, and at least one at the production gate when production
    says it requires approval (Environment.requires_approval)."""
    policy = release.version.model.policy
    if gate == "release":
        return policy.required_approvals
    production_requires = Environment.objects.filter(name="production", requires_approval=True).exists()
    return max(policy.production_approvals, 1 if production_requires else 0)


def decide(release_id: int, user, decision: str, comment: str, *, token_name: str | None = None) -> Approval:  # noqa: ANN001
    """Record one person's decision at the release gate, and move the release on when it is settled."""
    actor = Actor.person(user, token_name)
    with transaction.atomic():
        release = locked_release(release_id)
        gate = waiting_gate(release)
        if gate is None:
            raise TransitionError(f"release #{release_id} is {release.status}, not awaiting approval")
        reason = why_not(user, release)
        if reason:
            raise NotAllowed(reason)
        if already_decided(user, release, gate):
            raise TransitionError(f"{user.get_username()} has already decided on release #{release_id} "
                                  f"at the {gate} gate")
        approval = Approval.objects.create(release=release, gate=gate, user=user, decision=decision,
                                           comment=comment)
        record(actor, f"approval.{decision}", release=release, subject=f"{gate} gate of {release}",
               after={"gate": gate, "decision": decision, "comment": comment})
        stage = StageRun.objects.get(release=release, name=GATE_STAGES[gate])
        if decision == Approval.Decision.REJECT:
            why = f"rejected by {user.get_username()}" + (f": {comment}" if comment else "")
            transition_stage(stage.pk, "fail", actor=actor, reason=why)
            transition_release(release_id, "reject", actor=actor, reason=why, failure_reason=why)
        elif approvals_count(release, gate) >= required(release, gate):
            transition_stage(stage.pk, "succeed", actor=actor, step="approved")
            transition_release(release_id, "approve", actor=actor)
            pipeline.advance(release_id, actor)
        return approval


def approvals_count(release: Release, gate: str = "release") -> int:
    return Approval.objects.filter(release=release, gate=gate, decision=Approval.Decision.APPROVE).count()


def waiting_on(release: Release) -> int:
    """How many more approvals the release needs at the gate it waits at (counted from its approvals,
    prefetched by the pages)."""
    gate = waiting_gate(release)
    if gate is None:
        return 0
    given = sum(1 for a in release.approvals.all() if a.gate == gate and a.decision == Approval.Decision.APPROVE)
    return max(0, required(release, gate) - given)

