"""Shadow runs on Slipway's side: their paired figures collected from the active release's server with
the monitoring beat, and judged against the run's policy (shipping/shadow.py)."""

import logging

from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import ShadowRun
from releases import routing
from releases.models import Deployment, Release
from shipping import shadow

log = logging.getLogger(__name__)


def policy_of(run: ShadowRun) -> shadow.ShadowPolicy:
    return shadow.ShadowPolicy(minutes=run.minutes, min_pairs=run.min_pairs, min_agreement=run.min_agreement,
                               max_abs_difference=run.max_abs_difference, max_p95_increase=run.max_p95_increase)


def active_deployment(run: ShadowRun) -> Deployment | None:
    return Deployment.objects.filter(service__environment=run.environment, role=Deployment.Role.ACTIVE,
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
    """Collect every running shadow run; one whose server does not answer is skipped this time."""
    collected = 0
    for run in ShadowRun.objects.filter(stopped_at=None).select_related("environment"):
        try:
            collect_one(run)
        except shadow.ShadowError as exc:
            log.warning("shadow run %s not collected: %s", run.pk, exc)
        else:
            collected += 1
    return collected


def runs_of(release: Release) -> QuerySet[ShadowRun]:
    """The shadow runs a release took part in (as the shadow), newest first, for its page."""
    return ShadowRun.objects.filter(shadow=release).select_related("environment", "active")[:5]


def canary_refusal(release: Release, environment_name: str) -> str | None:
    """Why the release's canary must not start in the environment: its newest shadow run there was
    judged a failure. None when it has no shadow run there, or passed, or is not judged yet."""
    run = ShadowRun.objects.filter(shadow=release, environment__name=environment_name).first()
    if run is None or run.verdict != ShadowRun.Verdict.FAIL:
        return None
    return f"its shadow run in {environment_name} failed: {run.reason}"
