"""Shadow runs on Slipway's side: their paired figures collected from the active release's server with
the monitoring beat, judged against the run's policy (shipping/shadow.py), and the verdict as a gate
before the release's canary: a canary stage that waits for it is sent on by the same beat."""

import logging
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import MonitoringPolicy, ShadowRun
from releases import pipeline, routing
from releases.actors import Actor
from releases.models import Deployment, Release, Service, StageRun
from releases.models.pipeline import StageStatus
from shipping import shadow

log = logging.getLogger(__name__)


def policy_of(run: ShadowRun) -> shadow.ShadowPolicy:
    return shadow.ShadowPolicy(minutes=run.minutes, min_pairs=run.min_pairs, min_agreement=run.min_agreement,
                               max_abs_difference=run.max_abs_difference, max_p95_increase=run.max_p95_increase)


def active_deployment(run: ShadowRun) -> Deployment | None:
    return Deployment.objects.filter(service_id=run.service_id, role=Deployment.Role.ACTIVE,
                                     release=run.active).first()


def collect_one(run: ShadowRun) -> ShadowRun:
    """Read the active server's paired figures and judge them; a run whose active release no longer
    serves there is ended with that reason."""
    deployment = active_deployment(run)
    if deployment is None:
        run.stopped_at = timezone.now()
        run.reason = f"release #{run.active_id} is no longer active in {run.environment}; {run.reason}".strip("; ")
        run.save(update_fields=["stopped_at", "reason"])
        return run
    figures = shadow.report(routing.instance_of(deployment))
    minutes = (timezone.now() - run.started_at).total_seconds() / 60
    judged = shadow.verdict(figures, minutes, policy_of(run))
    run.figures, run.verdict, run.reason = figures, judged.decision, judged.reason
    run.save(update_fields=["figures", "verdict", "reason"])
    return run


def collect_shadows() -> int:
    """Collect every running shadow run (not those still starting); one whose server does not answer is
    skipped this time. Then canary stages waiting for a verdict are sent on, or told how far it is."""
    collected = 0
    for run in ShadowRun.objects.filter(stopped_at=None).exclude(instance={}).select_related("service__environment"):
        try:
            collect_one(run)
        except shadow.ShadowError as exc:
            log.warning("shadow run %s not collected: %s", run.pk, exc)
        else:
            collected += 1
    resume_waiting_canaries()
    return collected


def runs_of(release: Release) -> QuerySet[ShadowRun]:
    """The shadow runs a release took part in (as the shadow), newest first, for its page."""
    return ShadowRun.objects.filter(shadow=release).select_related("service__environment", "active")[:5]


WAITING_STEP = "waiting for the shadow verdict"
CANARY_ENVIRONMENT = "production"  # where the canary stage runs (workers/stages/deploy.py)


@dataclass(frozen=True)
class CanaryGate:
    decision: str  # go, wait or refuse
    reason: str


def canary_gate(release: Release, environment_name: str) -> CanaryGate:
    """Whether the release's canary may start in the environment, by its newest shadow run there: a
    failed verdict refuses it. When the model's monitoring policy makes the shadow a gate, the canary
    also waits for a verdict not reached yet (or for a run to be started), and is refused when the run
    was stopped before a verdict: the gate is never skipped silently."""
    run = (ShadowRun.objects.filter(shadow=release, service__environment__name=environment_name)
           .order_by("-pk").first())
    if run is not None and run.verdict == ShadowRun.Verdict.FAIL:
        return CanaryGate("refuse", f"its shadow run in {environment_name} failed: {run.reason}")
    if not MonitoringPolicy.objects.filter(model_id=release.version.model_id, shadow_gate=True).exists():
        return CanaryGate("go", "")
    if run is None:
        return CanaryGate("wait", f"{WAITING_STEP}: release #{release.pk} has no shadow run in {environment_name} "
                                  "yet; start one on its page, through the API or with manage.py shadow start")
    if run.verdict == ShadowRun.Verdict.PASS:
        return CanaryGate("go", f"its shadow run in {environment_name} passed: {run.reason}")
    if run.stopped_at is not None:
        return CanaryGate("refuse", f"its shadow run in {environment_name} was stopped before a verdict"
                                    + (f" ({run.reason})" if run.reason else ""))
    return CanaryGate("wait", f"{WAITING_STEP}: {run.reason or 'its server is starting'}")


def waiting_step(release_id: int) -> str:
    """The step of a canary stage that waits for the release's shadow verdict (always starts with
    WAITING_STEP: the beat finds the waiting stages by it)."""
    gate = canary_gate(Release.objects.select_related("version").get(pk=release_id), CANARY_ENVIRONMENT)
    return (gate.reason if gate.decision == "wait" else WAITING_STEP)[:200]


def resume_waiting_canaries() -> int:
    """Send on each canary stage waiting for a shadow verdict that is reached now (the stage asks the
    gate again when it runs); update the step of the others with how far their run is. Returns how
    many were sent on."""
    resumed = 0
    waiting = StageRun.objects.select_related("release__version").filter(
        name="canary", status=StageStatus.WAITING, step__startswith=WAITING_STEP)
    for stage in waiting:
        gate = canary_gate(stage.release, CANARY_ENVIRONMENT)
        if gate.decision == "wait":
            StageRun.objects.filter(pk=stage.pk, status=StageStatus.WAITING).update(step=gate.reason[:200])
            continue
        pipeline.enqueue(stage, Actor.system("shadow gate"), reason=gate.reason or "the shadow gate is off")
        resumed += 1
    return resumed


def drill_refusal(service: Service) -> str | None:
    """A rollback drill must not move the active release away while a shadow run pairs its answers."""
    run = ShadowRun.objects.filter(service=service, stopped_at=None).first()
    if run is None:
        return None
    return f"release #{run.shadow_id} runs in shadow of #{run.active_id}; drill once the shadow run has stopped"
