"""Webhook events, read off the one audit trail: which audit action is which event, and its payload.

audit action                      → event
build.received                    → build_received
release.await_approval            → gate_waiting   (payload "gate": release or production)
release.approve                   → approved       (the gate's approvals are complete, or none were needed)
release.reject                    → rejected       (one approver's rejection closes the gate)
environment.deploy / .promote     → deployed       (a release takes all traffic in an environment)
release.fail of a failed canary   → canary_failed  (analysis, smoke test or proxy: the stable release serves on)
environment.rollback              → rolled_back    (someone moved traffic back; a canary's own rollback is
                                                    canary_failed above, never rolled_back)
alert.fired                       → alert_firing
"""

from dataclasses import dataclass

from django.urls import reverse

from releases.approvals import GATE_STAGES, required, waiting_gate
from releases.models import AuditEvent, Release, StageRun
from releases.models.pipeline import StageStatus

EVENTS: dict[str, str] = {
    "build_received": "a build was posted and its release created",
    "gate_waiting": "a release waits for approvals at a gate (release or production)",
    "approved": "a release passed a gate",
    "rejected": "an approver rejected a release at a gate",
    "deployed": "a release took all traffic in an environment",
    "canary_failed": "a canary failed in production; the stable release serves on",
    "rolled_back": "an environment was rolled back to the release that served before",
    "alert_firing": "an alert fired",
}
EVENT_CHOICES = [(name, f"{name}: {text}") for name, text in EVENTS.items()]
# The audit actions that can make an event; every other action is passed over at once.
ACTIONS = {"build.received", "release.await_approval", "release.approve", "release.reject", "release.fail",
           "environment.deploy", "environment.promote", "environment.rollback", "alert.fired"}
STAGE_GATES = {stage: gate for gate, stage in GATE_STAGES.items()}


@dataclass(frozen=True)
class Occurrence:
    event: str
    release: Release | None
    details: dict


def _environment(audit: AuditEvent) -> str:
    return audit.subject.removeprefix("environment ")


def _release(release_id: str | int | None) -> Release | None:
    if release_id is None:
        return None
    return Release.objects.select_related("version__model").filter(pk=int(release_id)).first()


def _last_gate(release: Release) -> str | None:
    """The gate whose stage finished last: the one just approved or rejected."""
    stage = (StageRun.objects.filter(release=release, name__in=STAGE_GATES, finished_at__isnull=False)
             .order_by("-finished_at", "-id").first())
    return STAGE_GATES[stage.name] if stage else None


def _traffic(audit: AuditEvent) -> tuple[dict[str, int], dict[str, int]]:
    return audit.before.get("shares", {}), audit.after.get("shares", {})


def occurrence(audit: AuditEvent) -> Occurrence | None:
    """The webhook event this audit event is, if any."""
    action = audit.action
    release = _release(audit.release_id)
    if action == "build.received":
        return Occurrence("build_received", release, dict(audit.after))
    if action == "release.await_approval" and release is not None:
        gate = waiting_gate(release)
        needed = None if gate is None else required(release, gate)
        return Occurrence("gate_waiting", release, {"gate": gate, "approvals_required": needed})
    if action in ("release.approve", "release.reject") and release is not None:
        event = "approved" if action == "release.approve" else "rejected"
        return Occurrence(event, release, {"gate": _last_gate(release), "reason": audit.reason})
    if action == "release.fail":
        canary = StageRun.objects.filter(release=release, name="canary", status=StageStatus.FAILED).first()
        if canary is None:
            return None
        return Occurrence("canary_failed", release, {"environment": "production", "reason": canary.error})
    if action in ("environment.deploy", "environment.promote"):
        _, after = _traffic(audit)
        serving = max(after, key=lambda name: after[name], default=None)
        return Occurrence("deployed", _release(serving), {"environment": _environment(audit), "shares": after})
    if action == "environment.rollback":
        before, after = _traffic(audit)
        if set(before) & set(after):  # the stable release kept serving: a canary ended, said by canary_failed
            return None
        left = max(before, key=lambda name: before[name], default=None)
        back_to = max(after, key=lambda name: after[name], default=None)
        return Occurrence("rolled_back", _release(left), {
            "environment": _environment(audit), "to_release": None if back_to is None else int(back_to),
            "reason": audit.reason})
    if action == "alert.fired":
        return Occurrence("alert_firing", release, {"subject": audit.subject, "reason": audit.reason,
                                                    "before": audit.before, "after": audit.after})
    return None


def payload(audit: AuditEvent, found: Occurrence) -> dict:
    """The JSON body of the event's deliveries (the same body for every subscription and attempt)."""
    release = found.release
    return {
        "event": found.event,
        "at": audit.at.isoformat(),
        "actor": audit.actor_label,
        "release": None if release is None else {
            "id": release.pk, "model": release.version.model.name, "version": release.version.label,
            "status": release.status, "path": reverse("release", args=[release.pk])},
        **found.details,
        "audit_event": audit.pk,
    }
