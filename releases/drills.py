"""Rollback drills: one model's service is rolled back to its warm release and forward again, on demand or
on staging's schedule, and the times are recorded.

A drill is two moves under the service's lock, each through deploys.swap_with_warm (the release it goes
to is checked ready first; the one it leaves stays warm): back to the warm release, then forward to the
release that served. The times are the product's own: from the call until HAProxy applied 100 % of the
model's traffic on the previous release, and from there until it applied it on the current one again.
A drill that cannot start (nothing warm, a canary or shadow running, a deploy under way) is refused and
changes nothing; one that fails midway is recorded with the reason and where the traffic is then.
"""

import logging
import time
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from releases import deploys
from releases.actors import Actor
from releases.approvals import NotAllowed
from releases.models import Deployment, RollbackDrill, Service, StageRun
from releases.models.pipeline import StageStatus
from releases.pipeline import DEPLOY_STAGE_OF
from releases.roles import AnyUser, may
from releases.statemachine import TransitionError, record
from shipping.proxy import ProxyError
from shipping.targets import TargetError

log = logging.getLogger(__name__)
Role = Deployment.Role
SCHEDULED_ENVIRONMENT = "staging"
# Why a service must not be drilled now, from the layers above (monitoring adds a running shadow run).
REFUSALS: list[Callable[[Service], str | None]] = []


def why_no_drill(user: AnyUser | None, service: Service, now_running: deploys.Running) -> str | None:
    """Why the service cannot be drilled now (by this user, when one is given), or None if it can."""
    if user is not None and not may(user, "rollback"):
        return "only on-call engineers, deployers and admins may run a rollback drill"
    where = f"{service.model.name} in {service.environment.name}"
    if now_running.active is None:
        return f"nothing serves {where} now"
    if any(d.role == Role.CANARY for d in now_running.deployments):
        return f"a canary of {where} runs; drill once it is promoted or aborted"
    if now_running.target is None:
        return f"no earlier release of {where} is kept warm to roll back to"
    stage = DEPLOY_STAGE_OF.get(service.environment.name)
    deploying = StageRun.objects.filter(release__version__model=service.model_id, name=stage,
                                        status=StageStatus.RUNNING).first()
    if deploying is not None:
        return f"release #{deploying.release_id} is being deployed to {service.environment.name} now"
    return next((reason for reason in (refusal(service) for refusal in REFUSALS) if reason), None)


def drill(environment_name: str, model_name: str, user: AnyUser, *, token_name: str | None = None) -> RollbackDrill:
    """A person's drill (page, API, CLI): refused with NotAllowed or TransitionError when it cannot run."""
    if not may(user, "rollback"):
        raise NotAllowed(f"{user.get_username()} is not on-call, a deployer or an admin")
    return run(environment_name, model_name, Actor.person(user, token_name))


def run(environment_name: str, model_name: str, actor: Actor, *, scheduled: bool = False) -> RollbackDrill:
    started, started_at = time.perf_counter(), timezone.now()
    with transaction.atomic():
        service = deploys.service_of(environment_name, model_name, lock=True)
        now_running = deploys.running(service)
        active, target = now_running.active, now_running.target
        refusal = why_no_drill(None, service, now_running)
        if refusal or active is None or target is None:
            raise TransitionError(f"no rollback drill of {service}: {refusal}")
        result = RollbackDrill(service=service, current=active.release, previous=target.release, started_at=started_at,
                               actor=actor.user, actor_label=actor.label, scheduled=scheduled, ok=False)
        try:
            with transaction.atomic():
                back = deploys.swap_with_warm(service, target, actor, f"drill: back to #{target.release_id}",
                                              now_running=now_running)
            result.back_ms = round((back - started) * 1000, 1)
        except (TransitionError, ProxyError, TargetError) as exc:
            result.reason = f"not rolled back, #{active.release_id} serves on: {exc}"
        else:
            forward_started = time.perf_counter()
            try:
                with transaction.atomic():
                    forward = deploys.swap_with_warm(service, active, actor, f"drill: forward to #{active.release_id}")
                result.forward_ms, result.ok = round((forward - forward_started) * 1000, 1), True
            except (TransitionError, ProxyError, TargetError) as exc:
                result.reason = (f"rolled back, but not forward again: #{target.release_id} serves, "
                                 f"#{active.release_id} is warm: {exc}")
        result.save()
        record(actor, "environment.drill_result", subject=f"environment {environment_name}",
               after={"model": model_name, "ok": result.ok, "back_ms": result.back_ms,
                      "forward_ms": result.forward_ms, "current": active.release_id, "previous": target.release_id},
               reason=result.reason)
    return result


def last(service: Service) -> RollbackDrill | None:
    return service.drills.select_related("current__version", "previous__version").first()


def drill_staging() -> dict[str, int]:
    """Staging's scheduled drills (beat, every SLIPWAY_DRILL_STAGING_EVERY_S): each service there that
    can be drilled now is, once; the others are passed over this time."""
    done = {"ok": 0, "failed": 0, "passed_over": 0}
    names = Service.objects.filter(environment__name=SCHEDULED_ENVIRONMENT).values_list("model__name", flat=True)
    for model_name in names:
        try:
            result = run(SCHEDULED_ENVIRONMENT, model_name, Actor.system("drill schedule"), scheduled=True)
        except TransitionError as exc:
            log.info("%s", exc)
            done["passed_over"] += 1
            continue
        done["ok" if result.ok else "failed"] += 1
    return done
