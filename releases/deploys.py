"""Traffic of each model's service: who serves at what share, rollback, and what was live when.

Every move concerns one service (one model in one environment) and locks only its row: rolling one
model back never waits for, nor touches, another. Moving traffic is a call to the real proxy
(releases/routing.py) inside the transaction that records it, so the record and the proxy agree: if
the proxy refuses, nothing is recorded and what served before goes on serving. A rollback only moves
traffic — the previous release stays warm, and is checked ready first — so it takes milliseconds and
drops no request.

A deployment taken out of service (rolled back, or retired past the policy's warm count) owes a stop
of its instance: the record says so (stop_sent_at), a worker stops it and confirms (stopped_at), and
the sweeper sends a stop that was lost again, so no server keeps running unseen.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from releases import routing
from releases.actors import Actor
from releases.approvals import NotAllowed
from releases.models import Deployment, Environment, Release, Service, TrafficChange
from releases.models.pipeline import ReleaseStatus
from releases.roles import AnyUser, may
from releases.statemachine import TransitionError, record, transition_release
from shipping.targets import HealthCheckFailed, Instance, TargetError
from slipway.prepared import Prepared

log = logging.getLogger(__name__)
Role = Deployment.Role
# A second click on the same rollback within this window answers with the first one's result.
DOUBLE_CLICK_WINDOW = timedelta(minutes=5)
# Without an expected release, a second rollback this soon after another is taken as a duplicate.
UNGUARDED_REPEAT = timedelta(seconds=30)
# How long a rollback waits for the warm release's readiness answer before refusing.
WARM_CHECK_TIMEOUT_S = 1.0
STOP_INSTANCE_TASK = "workers.tasks.stop_instance"


class NoService(LookupError):
    """No such model serves in that environment (the API answers 404)."""


@Prepared
def _service(environment_name: str, model_name: str) -> QuerySet[Service]:
    return Service.objects.select_related("environment", "model__policy").filter(
        environment__name=environment_name, model__name=model_name)


@Prepared
def _locked_service(environment_name: str, model_name: str) -> QuerySet[Service]:
    return _service.build(environment_name, model_name).select_for_update(of=("self",))


def service_of(environment_name: str, model_name: str, *, lock: bool = False) -> Service:
    """The model's service in the environment; with `lock`, its row locked until the transaction ends.
    Prepared queries (slipway/prepared.py): a rollback's CPU before traffic moves is time too."""
    if lock and transaction.get_autocommit():  # as Django checks a select_for_update it compiles
        raise TransactionManagementError("a service is locked only inside a transaction")
    rows = (_locked_service if lock else _service).list(environment_name, model_name)
    service = rows[0] if rows else None
    if service is None:
        if not Environment.objects.filter(name=environment_name).exists():
            raise NoService(f"there is no environment {environment_name!r}")
        raise NoService(f"model {model_name!r} has never served in {environment_name}")
    return service


def _service_for_release(environment: Environment, release: Release) -> Service:
    """The release's model's service in the environment, made on its first deployment there (locked)."""
    model = release.version.model
    try:
        with transaction.atomic():
            Service.objects.get_or_create(environment=environment, model=model)
    except IntegrityError:  # made at the same moment by another deployment: use it
        pass
    return service_of(environment.name, model.name, lock=True)


@dataclass(frozen=True)
class Running:
    """A service's deployments that are not stopped, read in one query (a rollback's every round trip to
    the database before traffic moves is time the model serves from the release it leaves)."""

    deployments: list[Deployment]

    @property
    def active(self) -> Deployment | None:
        return next((d for d in self.deployments if d.role == Role.ACTIVE), None)

    @property
    def target(self) -> Deployment | None:
        """The warm release that would serve after a rollback: the most recent one that served before."""
        return max((d for d in self.deployments if d.role == Role.WARM), key=lambda d: (d.updated_at, d.pk),
                   default=None)

    @property
    def shares(self) -> dict[str, int]:
        return {str(d.release_id): d.traffic_percent for d in self.deployments if d.traffic_percent > 0}


@Prepared
def _running(service_id: int) -> QuerySet[Deployment]:
    return Deployment.objects.filter(service=service_id).exclude(role=Role.STOPPED).select_related(
        "release__version__model")


def running(service: Service) -> Running:
    deployments = _running.list(service.pk)
    for deployment in deployments:
        deployment.service = service  # as service.deployments sets it: no query when it is asked for
    return Running(deployments)


def why_no_rollback(user: AnyUser, service: Service, active: Deployment | None,
                    target: Deployment | None) -> str | None:
    """Why this user cannot roll this service back now, or None if they can (pages show this answer)."""
    if not may(user, "rollback"):
        return "only on-call engineers, deployers and admins may roll back"
    if active is None:
        return f"nothing serves {service.model.name} in {service.environment.name} now"
    if target is None:
        return f"no earlier release of {service.model.name} is kept warm in {service.environment.name} to go back to"
    return None


def check_warm(deployment: Deployment) -> None:
    """Raise TransitionError unless the warm release's server answers ready as itself: traffic is never
    moved to a dead server."""
    target = routing.target_for(deployment.service.environment)
    try:
        target.wait_ready(routing.instance_of(deployment), timeout=WARM_CHECK_TIMEOUT_S)
    except (HealthCheckFailed, TargetError) as exc:
        first_line = str(exc).splitlines()[0]
        raise TransitionError(f"the warm release #{deployment.release_id} is not ready, so traffic stays where it "
                              f"is: {first_line}. Deploy it again to have something to roll back to") from None


def _shares(service: Service) -> dict[str, int]:
    return {str(d.release_id): d.traffic_percent for d in service.deployments.filter(traffic_percent__gt=0)}


def _record_traffic(service: Service, action: str, actor: Actor, reason: str,
                    before: dict[str, int]) -> TrafficChange:
    shares = _shares(service)
    change = TrafficChange.objects.create(service=service, at=timezone.now(), shares=shares,
                                          action=action, actor=actor.user, reason=reason)
    record(actor, f"environment.{action}", subject=f"environment {service.environment.name}",
           before={"shares": before, "model": service.model.name},
           after={"shares": shares, "model": service.model.name}, reason=reason)
    return change


def rollback(environment_name: str, model_name: str, user: AnyUser, reason: str, *,
             expected_release_id: int | None = None, token_name: str | None = None) -> TrafficChange:
    """Move all of one model's traffic in one environment back to the release that served before; skips
    the gates, audited. Other models are not touched.

    `expected_release_id` is the release the person saw serving when they clicked: if it no longer
    serves because this very rollback already happened (a double click), the first result is
    returned and nothing moves again.
    """
    if not may(user, "rollback"):
        raise NotAllowed(f"{user.get_username()} is not on-call, a deployer or an admin")
    if not reason.strip():
        raise ValueError("say why you roll back")
    actor = Actor.person(user, token_name)
    with transaction.atomic():
        service = service_of(environment_name, model_name, lock=True)
        where = f"{model_name} in {environment_name}"
        now_running = running(service)
        active = now_running.active
        if expected_release_id is not None and (active is None or active.release_id != expected_release_id):
            earlier = service.traffic_changes.filter(action="rollback",
                                                     at__gte=timezone.now() - DOUBLE_CLICK_WINDOW).first()
            if earlier is not None and str(expected_release_id) not in earlier.shares:
                return earlier
            now = f"#{active.release_id}" if active else "nothing"
            raise TransitionError(f"release #{expected_release_id} does not serve {where}; {now} does")
        if expected_release_id is None:
            recent = service.traffic_changes.filter(action="rollback",
                                                    at__gte=timezone.now() - UNGUARDED_REPEAT).first()
            if recent is not None:
                raise TransitionError(f"{where} was rolled back {(timezone.now() - recent.at).seconds} s "
                                      "ago; to roll back further, say which release you expect to replace "
                                      "(expected_release)")
        target = now_running.target
        if active is None or target is None:
            raise TransitionError(f"nothing to roll back to for {where}: no earlier release is warm")
        check_warm(target)
        routing.move_traffic(service, {target: 100})
        leaving = [d for d in now_running.deployments if d.role in (Role.ACTIVE, Role.CANARY)]
        for deployment in leaving:
            take_out(deployment)
        target.role, target.traffic_percent = Role.ACTIVE, 100
        target.save(update_fields=["role", "traffic_percent", "updated_at"])
        change = _record_traffic(service, "rollback", actor, reason, now_running.shares)
        from releases import canaries  # a canary that was serving ends with the rollback

        canaries.close_for(leaving, f"rolled back by {actor.label}: {reason}", actor)
        if environment_name == "production" and active.release.status == ReleaseStatus.RELEASED:
            transition_release(active.release_id, "roll_back", actor=actor, reason=reason)
    return change


def take_out(deployment: Deployment) -> None:
    """The deployment serves no more and its instance is to stop: recorded now, the stop sent on commit."""
    deployment.role, deployment.traffic_percent = Role.STOPPED, 0
    deployment.stop_sent_at, deployment.stopped_at = timezone.now(), None
    deployment.save(update_fields=["role", "traffic_percent", "stop_sent_at", "stopped_at", "updated_at"])
    transaction.on_commit(partial(send_stop, deployment.pk))


def send_stop(deployment_id: int) -> bool:
    """Hand the stop of a deployment's instance to a worker. A broker that is down loses nothing: the stop
    stays owed in the database and the sweeper sends it again."""
    try:
        current_app.send_task(STOP_INSTANCE_TASK, kwargs={"deployment_id": deployment_id}, queue="deploy")
    except Exception:
        log.exception("could not send the stop of deployment %s to the broker; the sweeper sends it again",
                      deployment_id)
        return False
    return True


def _retire_old_warm(service: Service, keep: int) -> None:
    """Keep the `keep` most recent warm releases running; the older ones are stopped."""
    for deployment in service.deployments.filter(role=Role.WARM).order_by("-updated_at", "-id")[keep:]:
        take_out(deployment)


def put_in_service(release_id: int, environment_name: str, instance: Instance, *, canary_percent: int | None,
                   actor: Actor, image: str = "", reason: str = "") -> Deployment:
    """A release's ready, health-checked instance gets its model's traffic in the environment: all of it,
    or `canary_percent` as a canary. With all of it, the release that served before stays warm."""
    with transaction.atomic():
        environment = Environment.objects.get(name=environment_name)
        release = Release.objects.select_related("version__model__policy").get(pk=release_id)
        service = _service_for_release(environment, release)
        active = service.deployments.filter(role=Role.ACTIVE).first()
        deployment, _ = Deployment.objects.update_or_create(
            service=service, release=release,
            defaults={"role": Role.STOPPED, "traffic_percent": 0, "instance": routing.instance_record(instance),
                      "endpoint": instance.url, "image": image, "stop_sent_at": None, "stopped_at": None})
        before = _shares(service)
        if canary_percent is not None and active is not None and active.pk != deployment.pk:
            if service.deployments.filter(role=Role.CANARY).exclude(pk=deployment.pk).exists():
                raise TransitionError(f"{service} already has a canary; promote or abort it first")
            routing.move_traffic(service, {active: 100 - canary_percent, deployment: canary_percent})
            active.traffic_percent = 100 - canary_percent
            active.save(update_fields=["traffic_percent", "updated_at"])
            deployment.role, deployment.traffic_percent, action = Role.CANARY, canary_percent, "canary"
        else:
            routing.move_traffic(service, {deployment: 100})
            if active is not None and active.pk != deployment.pk:
                active.role, active.traffic_percent = Role.WARM, 0
                active.save(update_fields=["role", "traffic_percent", "updated_at"])
            deployment.role, deployment.traffic_percent, action = Role.ACTIVE, 100, "deploy"
        deployment.save()
        _record_traffic(service, action, actor, reason or f"release #{release_id}", before)
        _retire_old_warm(service, release.version.model.policy.keep_warm)
        return deployment


def swap_with_warm(service: Service, warm: Deployment, actor: Actor, reason: str, *,
                   now_running: Running | None = None) -> float:
    """All of the service's traffic to one of its warm releases, checked ready first; the active release
    stays warm (a drill's move, either way). The caller holds the service's lock; `now_running` is what it
    read under that lock, if nothing moved since (one query less before traffic moves). Returns the moment
    (perf_counter) the proxy had applied the move."""
    now_running = now_running or running(service)
    active = now_running.active
    if active is None:
        raise TransitionError(f"nothing serves {service} now")
    check_warm(warm)
    routing.move_traffic(service, {warm: 100})
    moved = time.perf_counter()
    active.role, active.traffic_percent = Role.WARM, 0
    active.save(update_fields=["role", "traffic_percent", "updated_at"])
    warm.role, warm.traffic_percent = Role.ACTIVE, 100
    warm.save(update_fields=["role", "traffic_percent", "updated_at"])
    _record_traffic(service, "drill", actor, reason, now_running.shares)
    return moved


def end_canary(service: Service, *, promote: bool, actor: Actor, reason: str) -> Deployment:
    """Promote the service's canary to all its traffic (the stable release stays warm), or take it out.
    The caller holds the service's lock (service_of(..., lock=True))."""
    canary = service.deployments.filter(role=Role.CANARY).first()
    active = service.deployments.filter(role=Role.ACTIVE).first()
    if canary is None or active is None:
        raise TransitionError(f"{service} has no canary")
    before = _shares(service)
    winner, loser = (canary, active) if promote else (active, canary)
    routing.move_traffic(service, {winner: 100})
    if promote:
        loser.role, loser.traffic_percent = Role.WARM, 0
        loser.save(update_fields=["role", "traffic_percent", "updated_at"])
    else:
        take_out(loser)
    winner.role, winner.traffic_percent = Role.ACTIVE, 100
    winner.save(update_fields=["role", "traffic_percent", "updated_at"])
    _record_traffic(service, "promote" if promote else "rollback", actor, reason, before)
    return winner


def live_at(service: Service, at: datetime) -> tuple[TrafficChange | None, list[Release]]:
    """What served the service's model at moment `at`, from the record of its traffic changes."""
    change = service.traffic_changes.filter(at__lte=at).order_by("-at", "-id").first()
    if change is None:
        return None, []
    ids = [int(k) for k, share in change.shares.items() if share > 0]
    releases = Release.objects.filter(pk__in=ids).select_related("version__model")
    return change, sorted(releases, key=lambda r: -change.shares[str(r.pk)])
