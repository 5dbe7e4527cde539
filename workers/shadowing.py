"""Placing a release in shadow for its model in an environment, starting its server, and ending it.

One shadow runs per service (one model in one environment) at a time: two models in one environment
each have their own. A second shadow for a service that has one is refused (stop the first): a silent
replacement would end a run, and its verdict, that someone may be waiting on.

`place` checks and records the run (the API, the page and `manage.py shadow` call it), `launch_run`
starts the shadow's server and has the active server copy requests to it (a deploy-queue task, or
the command right away), `stop` ends it.

The start is owed until the server runs: the run records when it was last sent (start_sent_at), and
the sweeper (`resend_starts`) sends a start the broker refused or lost, or whose worker died, again,
until SLIPWAY_SHADOW_START_MAX_ATTEMPTS were sent; then the run ends with that reason. A worker takes
the start first (launching_at, by a conditional update): a redelivered or resent start finds it taken
and launches no second server. A worker killed while launching holds it until the stage time limit
has passed (`over_time_limit`: no task runs longer).
"""

import contextlib
import logging
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from monitoring.models import ShadowRun
from monitoring.shadowing import active_deployment, collect_one
from releases import routing
from releases.actors import Actor
from releases.models import Deployment, Environment, Model, Release, Service
from releases.routing import target_for
from releases.statemachine import record
from releases.sweeper import over_time_limit, renew
from serving.shadow import KEPT_PAIRS
from shipping import shadow
from shipping.targets import Instance, TargetError
from workers.deploying import control_token, launch

log = logging.getLogger(__name__)
START_TASK = "workers.tasks.start_shadow"


class ShadowRefused(ValueError):
    """The shadow cannot be placed or stopped; the message says why. ``kind``: ``unknown`` (no such
    environment, model, release or run), ``invalid`` (the request itself is wrong) or ``conflict``
    (the service's state does not allow it now)."""

    def __init__(self, message: str, kind: str = "conflict") -> None:
        super().__init__(message)
        self.kind = kind


def running(environment_name: str, model_name: str) -> ShadowRun | None:
    """The service's running shadow run, if any (unknown environment or model: ShadowRefused)."""
    if not Environment.objects.filter(name=environment_name).exists():
        raise ShadowRefused(f"there is no environment {environment_name!r}", "unknown")
    if not Model.objects.filter(name=model_name).exists():
        raise ShadowRefused(f"there is no model {model_name!r}", "unknown")
    return (ShadowRun.objects.select_related("service__environment", "service__model")
            .filter(service__environment__name=environment_name, service__model__name=model_name,
                    stopped_at=None).first())


def place(environment_name: str, model_name: str, release_id: int, share: float, actor: Actor,
          **policy: float) -> ShadowRun:
    """Record a shadow run of the release beside its service's active release (its server not started
    yet: `launch_run`). Refuses (ShadowRefused) anything that could not run, before storing anything."""
    if running(environment_name, model_name) is not None:
        raise ShadowRefused(f"{model_name} already has a release in shadow in {environment_name}; stop it first")
    release = Release.objects.select_related("version__model").filter(pk=release_id).first()
    if release is None:
        raise ShadowRefused(f"there is no release {release_id!r}", "unknown")
    if release.version.model.name != model_name:
        raise ShadowRefused(f"release #{release.pk} is a release of {release.version.model.name}, not of "
                            f"{model_name}", "invalid")
    if not 0 < share <= 1:
        raise ShadowRefused(f"share must be in (0, 1], not {share:g}", "invalid")
    bad = sorted(name for name, value in policy.items() if not 0 <= value < float("inf"))
    if bad:
        raise ShadowRefused(f"{', '.join(bad)} must be a finite number, not negative", "invalid")
    if policy.get("min_pairs", 0) > KEPT_PAIRS:
        raise ShadowRefused(f"min_pairs must be at most {KEPT_PAIRS}, the pairs a server keeps", "invalid")
    if "min_pairs" in policy:
        policy["min_pairs"] = int(policy["min_pairs"])
    service = Service.objects.filter(environment__name=environment_name, model__name=model_name).first()
    active = None if service is None else (service.deployments.filter(role=Deployment.Role.ACTIVE)
                                           .select_related("release").first())
    if service is None or active is None:
        raise ShadowRefused(f"no release of {model_name} is active in {environment_name}: nothing to shadow")
    if active.release_id == release.pk:
        raise ShadowRefused(f"release #{release.pk} is the active release of {model_name} in {environment_name}")
    try:
        with transaction.atomic():
            now = timezone.now()
            run = ShadowRun.objects.create(service=service, active=active.release, shadow=release, share=share,
                                           started_at=now, start_sent_at=now, start_attempts=1, **policy)
            record(actor, "shadow.start", release=release, subject=f"shadow of {model_name} in {environment_name}",
                   after={"active": active.release_id, "share": share, **policy})
    except IntegrityError:  # another request placed one meanwhile
        raise ShadowRefused(f"{model_name} already has a release in shadow in {environment_name}; "
                            "stop it first") from None
    return run


def send_launch(run_id: int) -> bool:
    """Have a deploy worker start the run's server (call it once the run is committed)."""
    try:
        current_app.send_task(START_TASK, kwargs={"run_id": run_id}, queue="deploy")
    except Exception:
        log.exception("could not send the start of shadow run %s to the broker", run_id)
        return False
    return True


def place_and_send(environment_name: str, model_name: str, release_id: int, share: float, actor: Actor,
                   **policy: float) -> ShadowRun:
    """`place`, then a deploy worker starts the server once the run is committed (the API and the page)."""
    with transaction.atomic():
        run = place(environment_name, model_name, release_id, share, actor, **policy)
        transaction.on_commit(lambda: send_launch(run.pk))
    return run


def _unstarted(now: datetime) -> QuerySet[ShadowRun]:
    """Runs whose server is owed a start that no worker is carrying out now."""
    return ShadowRun.objects.filter(Q(launching_at=None) | Q(launching_at__lt=now - over_time_limit()),
                                    stopped_at=None, instance={})


def resend_starts(sent_before: datetime) -> dict[str, int]:
    """Send again each start sent before `sent_before` whose server has not started; end the run instead
    once SLIPWAY_SHADOW_START_MAX_ATTEMPTS were sent (the sweep calls this beside `sweeper.sweep`)."""
    now, resent, ended = timezone.now(), 0, 0
    most = settings.SLIPWAY_SHADOW_START_MAX_ATTEMPTS
    owed = _unstarted(now).filter(start_sent_at__lt=sent_before)
    for run_id, sent_at, attempts in owed.values_list("pk", "start_sent_at", "start_attempts"):
        if attempts >= most:
            reason = (f"not started after {attempts} attempts: no deploy worker started its server within "
                      f"{settings.SLIPWAY_STAGE_RESEND_AFTER_S:g} s of a send (are a deploy worker and the "
                      "broker running?)")
            ended += _unstarted(now).filter(pk=run_id, start_sent_at=sent_at).update(stopped_at=now, reason=reason)
        elif renew(_unstarted(now).filter(pk=run_id), "start_sent_at", sent_at, now,
                   start_attempts=F("start_attempts") + 1):
            resent += send_launch(run_id)
    return {"starts_resent": resent, "starts_ended": ended}


def _take(run_id: int) -> bool:
    """Take the start of the run's server: True for the one caller whose update matched."""
    now = timezone.now()
    return _unstarted(now).filter(pk=run_id).update(launching_at=now) > 0


def launch_run(run_id: int) -> ShadowRun | None:
    """Start the shadow's own server (outside the proxy: it gets no live traffic) and have the active
    server copy the run's share of its requests to it. A run that cannot start is ended with the reason.
    None when there is nothing to start: the run started, stopped, or another worker is starting it."""
    if not _take(run_id):
        return None
    run = ShadowRun.objects.select_related("service__environment", "service__model", "shadow__version__model",
                                           "active").get(pk=run_id)
    try:
        return _launch(run)
    except BaseException:  # the start stays owed: the sweeper sends it again, without waiting for the lease
        ShadowRun.objects.filter(pk=run_id, instance={}).update(launching_at=None)
        raise


def _launch(run: ShadowRun) -> ShadowRun:
    environment = run.service.environment
    deployment = active_deployment(run)
    try:
        if deployment is None:
            raise ShadowRefused(f"release #{run.active_id} is no longer active in {environment}")
        instance = launch(run.shadow, environment)
    except (ShadowRefused, TargetError) as exc:
        return _end(run, f"not started: {exc}")
    try:
        shadow.start(routing.instance_of(deployment), control_token(environment.name, str(run.active_id)),
                     instance, run.share, run.service.model.task)
    except shadow.ShadowError as exc:
        target_for(environment).stop(instance, timeout=5)
        return _end(run, f"not started: {exc}")
    except BaseException:
        target_for(environment).stop(instance, timeout=5)
        raise
    with transaction.atomic():
        run = ShadowRun.objects.select_for_update().get(pk=run.pk)
        if run.stopped_at is None:  # not stopped while its server started
            run.instance, run.started_at = routing.instance_record(instance), timezone.now()
            run.save(update_fields=["instance", "started_at"])
            return run
    with contextlib.suppress(shadow.ShadowError):
        shadow.stop(routing.instance_of(deployment), control_token(environment.name, str(run.active_id)))
    target_for(environment).stop(instance, timeout=5)
    return run


def _end(run: ShadowRun, reason: str) -> ShadowRun:
    run.stopped_at, run.reason = timezone.now(), reason
    run.save(update_fields=["stopped_at", "reason"])
    return run


def stop(run: ShadowRun, actor: Actor) -> ShadowRun:
    """Take the last figures, stop the copying and the shadow's server."""
    deployment = active_deployment(run)
    environment = run.service.environment
    if deployment is not None and run.instance:
        collect_one(run)
        with contextlib.suppress(shadow.ShadowError):  # a gone or restarted active server copies nothing
            shadow.stop(routing.instance_of(deployment), control_token(environment.name, str(run.active_id)))
    if run.instance:
        target_for(environment).stop(Instance(**run.instance), timeout=10)
    run.stopped_at = timezone.now()
    run.save(update_fields=["stopped_at"])
    record(actor, "shadow.stop", release=run.shadow, subject=f"shadow of {run.service.model.name} in {environment}",
           after={"verdict": run.verdict, "pairs": run.figures.get("pairs", 0)})
    return run
