"""Canary analysis as short scheduled checks: no task waits through a window.

The canary stage puts the release in service at the policy's share and opens a Canary (its window,
the stable and canary counters it starts from), then ends; the stage waits. Every
SLIPWAY_CANARY_CHECK_EVERY_S seconds beat sends `workers.tasks.check_canaries`, which, for each canary
under watch, scrapes the stable and the canary server's /metrics once (the charts' serving figures are
collected for every running release by monitoring.serving) and, once the window has ended, reaches the
verdict:
- passed: the canary is promoted and the release moves on;
- failed (enough traffic, thresholds exceeded): it is taken out and the release fails with the figures;
- inconclusive (too little traffic): the window is extended, up to the policy's canary_max_extensions
  times; then it waits for a person to promote or abort it (page, API, CLI). Never rolled back as a
  failure.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from releases import deploys, pipeline, routing
from releases.actors import Actor
from releases.approvals import NotAllowed
from releases.models import Canary, Deployment, ReleasePolicy, Service, StageRun
from releases.models.pipeline import StageStatus
from releases.roles import AnyUser, may
from releases.statemachine import TransitionError, transition_stage
from shipping.canary import Sample, Thresholds, Verdict, analyse, sample_from_json, sample_to_json, scrape, window

log = logging.getLogger(__name__)
Status = Canary.Status


def _scrape(deployment: Deployment) -> Sample:
    return scrape(routing.instance_of(deployment).url, timeout=2.0)


def _window(policy: ReleasePolicy) -> timedelta:
    return timedelta(minutes=policy.canary_minutes)


def open_canary(canary: Deployment, stage: StageRun | None) -> Canary:
    """Start watching a canary that was just put in service next to its service's active release."""
    service = canary.service
    stable = service.deployments.get(role=Deployment.Role.ACTIVE)
    policy = service.model.policy
    now = timezone.now()
    first = {"stable": sample_to_json(_scrape(stable)), "canary": sample_to_json(_scrape(canary))}
    run, _ = Canary.objects.update_or_create(deployment=canary, defaults={
        "stable": stable, "stage": stage, "status": Status.WATCHING, "started_at": now,
        "ends_at": now + _window(policy), "extensions": 0, "first": first, "last": first, "checked_at": now,
        "stable_requests": 0, "canary_requests": 0, "requests_needed": policy.canary_min_requests,
        "verdict": "", "decided_at": None})
    return run


def check_all() -> dict[str, int]:
    """One short pass over every canary under watch: sample each, judge those whose window ended."""
    done = {"sampled": 0, "decided": 0, "errors": 0}
    for pk in Canary.objects.filter(status=Status.WATCHING).values_list("pk", flat=True):
        try:
            outcome = check(pk)
        except Exception:  # one unreachable canary must not stop the others' analysis
            log.exception("canary %s could not be checked", pk)
            done["errors"] += 1
            continue
        if outcome:
            done["sampled"] += 1
            done["decided"] += outcome == "decided"
    return done


def check(canary_id: int) -> str | None:
    """Sample one canary; at the end of its window, reach the verdict. Skips a canary another check holds."""
    with transaction.atomic():
        run = (Canary.objects.select_for_update(skip_locked=True, of=("self",))
               .select_related("deployment__service__model__policy", "deployment__service__environment",
                               "stable").filter(pk=canary_id, status=Status.WATCHING).first())
        if run is None:
            return None
        now = timezone.now()
        last = {"stable": _scrape(run.stable), "canary": _scrape(run.deployment)}
        run.last = {role: sample_to_json(sample) for role, sample in last.items()}
        run.stable_requests = window(sample_from_json(run.first["stable"]), last["stable"]).requests
        run.canary_requests = window(sample_from_json(run.first["canary"]), last["canary"]).requests
        run.checked_at = now
        stage_settling = run.stage_id is not None and StageRun.objects.filter(
            pk=run.stage_id, status__in=[StageStatus.RUNNING, StageStatus.QUEUED]).exists()
        if now < run.ends_at or stage_settling:  # the stage that opened it has not ended yet
            run.save()
            return "sampled"
        _judge(run)
        return "decided"


def verdict_of(run: Canary) -> Verdict:
    policy = run.deployment.service.model.policy
    return analyse(window(sample_from_json(run.first["stable"]), sample_from_json(run.last["stable"])),
                   window(sample_from_json(run.first["canary"]), sample_from_json(run.last["canary"])),
                   Thresholds(max_error_rate_increase=policy.canary_max_error_rate_increase,
                              max_p95_ratio=policy.canary_max_p95_ratio, min_requests=policy.canary_min_requests))


def inconclusive(run: Canary) -> bool:
    return min(run.stable_requests, run.canary_requests) < run.requests_needed


def _judge(run: Canary) -> None:
    actor = Actor.worker()
    service = deploys.service_of(run.deployment.service.environment.name, run.deployment.service.model.name,
                                 lock=True)
    policy = service.model.policy
    verdict = verdict_of(run)
    release = f"release #{run.deployment.release_id}"
    if inconclusive(run):
        if run.extensions < policy.canary_max_extensions:
            run.extensions += 1
            run.ends_at = run.ends_at + _window(policy)
            run.verdict = (f"inconclusive: {verdict.reason}; window extended ({run.extensions} of "
                           f"{policy.canary_max_extensions}) until {run.ends_at:%H:%M:%S} UTC")
        else:
            run.status = Status.WAITING
            run.verdict = (f"inconclusive after {run.extensions} extensions: {verdict.reason}; waiting for a "
                           "person to promote or abort it")
        run.save()
        _log_stage(run, f"canary analysis: {run.verdict}")
        return
    run.status, run.verdict, run.decided_at = (Status.PROMOTED if verdict.passed else Status.FAILED,
                                               verdict.reason, timezone.now())
    run.save()
    reason = f"canary analysis of {release}: {verdict.reason}"
    deploys.end_canary(service, promote=verdict.passed, actor=actor, reason=reason)
    _settle_stage(run, actor, passed=verdict.passed,
                  reason=f"canary rolled back automatically: {verdict.reason}",
                  log_line=f"canary analysis: {verdict.reason}")


def _log_stage(run: Canary, line: str) -> None:
    if run.stage_id is not None:
        stage = StageRun.objects.select_for_update().get(pk=run.stage_id)
        stage.log = (stage.log + "\n" + line).lstrip("\n")
        stage.save(update_fields=["log"])


def _settle_stage(run: Canary, actor: Actor, *, passed: bool, reason: str, log_line: str) -> None:
    """The waiting canary stage succeeds (the release moves on) or fails with the reason."""
    _log_stage(run, log_line)
    if run.stage_id is None:
        return
    stage = StageRun.objects.get(pk=run.stage_id)
    if stage.status != StageStatus.WAITING:
        return
    if passed:
        transition_stage(stage.pk, "succeed", actor=actor, step="promoted")
        pipeline.advance(stage.release_id, actor)
    else:
        pipeline.fail_stage(stage, actor, reason)


def open_canary_of(service: Service) -> Canary | None:
    return (Canary.objects.filter(deployment__service=service, status__in=[Status.WATCHING, Status.WAITING])
            .select_related("deployment__release__version").first())


def why_no_decision(user: AnyUser, service: Service, run: Canary | None) -> str | None:
    """Why this user cannot promote or abort the service's canary now, or None if they can."""
    if not may(user, "deploy"):
        return "only deployers and admins may promote or abort a canary"
    if run is None:
        return f"no canary of {service.model.name} is running in {service.environment.name}"
    return None


def decide(environment_name: str, model_name: str, user: AnyUser, *, promote: bool, reason: str,
           token_name: str | None = None) -> Canary:
    """A person promotes or aborts the service's open canary (watching or waiting for a person)."""
    if not reason.strip():
        raise ValueError("say why")
    actor = Actor.person(user, token_name)
    with transaction.atomic():
        service = deploys.service_of(environment_name, model_name, lock=True)
        run = open_canary_of(service)
        why = why_no_decision(user, service, run)
        if why is not None or run is None:
            raise (NotAllowed if run is not None else TransitionError)(why)
        run = Canary.objects.select_for_update().get(pk=run.pk)
        verb = "promoted" if promote else "aborted"
        run.status = Status.PROMOTED if promote else Status.ABORTED
        run.verdict = f"{verb} by {actor.label}: {reason}" + (f" (analysis: {run.verdict})" if run.verdict else "")
        run.decided_at = timezone.now()
        run.save()
        deploys.end_canary(service, promote=promote, actor=actor, reason=f"canary {verb} by {actor.label}: {reason}")
        _settle_stage(run, actor, passed=promote, reason=f"canary aborted by {actor.label}: {reason}",
                      log_line=f"canary {verb} by {actor.label}: {reason}")
        return run


def close_for(leaving: list[Deployment], reason: str, actor: Actor) -> None:
    """A rollback took these deployments out: their open canaries end as aborted."""
    for run in Canary.objects.select_for_update().filter(deployment__in=leaving,
                                                         status__in=[Status.WATCHING, Status.WAITING]):
        run.status, run.verdict, run.decided_at = Status.ABORTED, reason, timezone.now()
        run.save()
        _settle_stage(run, actor, passed=False, reason=reason, log_line=f"canary ended: {reason}")


