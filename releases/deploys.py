"""Traffic in each environment: who serves at what share, rollback, and what was live when.

Moving traffic is a call to the real proxy (HAProxy's runtime API) inside the transaction that
records it, so the record and the proxy agree: if the proxy refuses, nothing is recorded and what
served before goes on serving. A rollback only moves traffic — the previous release stays warm —
so it takes milliseconds and drops no request.
"""

import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from releases.actors import Actor
from releases.approvals import NotAllowed
from releases.models import Deployment, Environment, Release, TrafficChange
from releases.models.pipeline import ReleaseStatus
from releases.roles import may
from releases.statemachine import TransitionError, record, transition_release

if TYPE_CHECKING:
    from shipping.targets import Instance

log = logging.getLogger(__name__)
Role = Deployment.Role
# A second click on the same rollback within this window answers with the first one's result.
DOUBLE_CLICK_WINDOW = timedelta(minutes=5)
# Without an expected release, a second rollback this soon after another is taken as a duplicate.
UNGUARDED_REPEAT = timedelta(seconds=30)


def proxy_config():  # noqa: ANN201 - shipping.proxy.ProxyConfig, imported late
    """The HAProxy that fronts every environment, one stable port each (Environment.proxy_port)."""
    from shipping.proxy import ProxyConfig

    ports = dict(Environment.objects.values_list("name", "proxy_port"))
    return ProxyConfig(state_dir=settings.SLIPWAY_PROXY_DIR, environments=ports,
                       bind_host=settings.SLIPWAY_PROXY_HOST)


def instance_of(deployment: Deployment) -> "Instance":
    from shipping.targets import Instance

    return Instance(**deployment.instance)


def instance_record(instance: "Instance") -> dict:
    return asdict(instance)


def move_traffic(environment: Environment, shares: dict[Deployment, int]) -> None:
    """Set the proxy's weights (a cluster's HTTPRoute weights): each deployment gets its share, every other
    slot none."""
    weights = {instance_of(d): share for d, share in shares.items()}
    if environment.target == "kubernetes":
        from workers.deploying import kubernetes_target

        kubernetes_target().route_traffic(environment.name, weights)
        return
    from shipping.proxy import set_traffic

    set_traffic(proxy_config(), environment.name, weights)


def rollback_target(environment: Environment) -> Deployment | None:
    """The warm release that would serve after a rollback: the most recent one that served before."""
    return (environment.deployments.filter(role=Role.WARM).select_related("release__version__model")
            .order_by("-updated_at", "-id").first())


def _record_traffic(environment: Environment, action: str, actor: Actor, reason: str,
                    before: dict[str, int]) -> TrafficChange:
    shares = _shares(environment)
    change = TrafficChange.objects.create(environment=environment, at=timezone.now(), shares=shares,
                                          action=action, actor=actor.user, reason=reason)
    record(actor, f"environment.{action}", subject=f"environment {environment.name}",
           before={"shares": before}, after={"shares": shares}, reason=reason)
    return change


def _shares(environment: Environment) -> dict[str, int]:
    return {str(d.release_id): d.traffic_percent for d in environment.deployments.filter(traffic_percent__gt=0)}


def rollback(environment_name: str, user, reason: str, *, expected_release_id: int | None = None,  # noqa: ANN001
             token_name: str | None = None) -> TrafficChange:
    """Move all traffic back to the release that served before; skips the gates, audited.

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
        environment = Environment.objects.select_for_update().get(name=environment_name)
        active = environment.deployments.filter(role=Role.ACTIVE).first()
        if expected_release_id is not None and (active is None or active.release_id != expected_release_id):
            earlier = environment.traffic_changes.filter(action="rollback",
                                                         at__gte=timezone.now() - DOUBLE_CLICK_WINDOW).first()
            if earlier is not None and str(expected_release_id) not in earlier.shares:
                return earlier
            now = f"#{active.release_id}" if active else "nothing"
            raise TransitionError(f"release #{expected_release_id} does not serve in {environment_name}; "
                                  f"{now} does")
        if expected_release_id is None:
            recent = environment.traffic_changes.filter(action="rollback",
                                                        at__gte=timezone.now() - UNGUARDED_REPEAT).first()
            if recent is not None:
                raise TransitionError(f"{environment_name} was rolled back {(timezone.now() - recent.at).seconds} s "
                                      "ago; to roll back further, say which release you expect to replace "
                                      "(expected_release)")
        target = rollback_target(environment)
        if active is None or target is None:
            raise TransitionError(f"nothing to roll back to in {environment_name}: no earlier release is warm")
        before = _shares(environment)
        move_traffic(environment, {target: 100})
        leaving = list(environment.deployments.filter(role__in=[Role.ACTIVE, Role.CANARY]))
        for deployment in leaving:
            deployment.role, deployment.traffic_percent = Role.STOPPED, 0
            deployment.save(update_fields=["role", "traffic_percent", "updated_at"])
        target.role, target.traffic_percent = Role.ACTIVE, 100
        target.save(update_fields=["role", "traffic_percent", "updated_at"])
        change = _record_traffic(environment, "rollback", actor, reason, before)
        if environment_name == "production" and active.release.status == ReleaseStatus.RELEASED:
            transition_release(active.release_id, "roll_back", actor=actor, reason=reason)
        for deployment in leaving:
            transaction.on_commit(partial(stop_instance_later, deployment))
    return change


def stop_instance_later(deployment: Deployment) -> None:
    try:
        current_app.send_task("workers.tasks.stop_instance", kwargs={"deployment_id": deployment.pk},
                              queue="deploy")
    except Exception:  # the broker is down: the instance idles until an operator stops it
        log.exception("could not queue the stop of deployment %s", deployment.pk)


def _retire_old_warm(environment: Environment, keep: int) -> list[Deployment]:
    """Keep the `keep` most recent warm releases running; the older ones are stopped."""
    warm = list(environment.deployments.filter(role=Role.WARM).order_by("-updated_at", "-id"))
    for deployment in warm[keep:]:
        deployment.role = Role.STOPPED
        deployment.save(update_fields=["role", "updated_at"])
    return warm[keep:]


def put_in_service(release_id: int, environment_name: str, instance: "Instance", *, canary_percent: int | None,
                   actor: Actor, image: str = "", reason: str = "") -> Deployment:
    """A release's ready, health-checked instance gets traffic: all of it, or `canary_percent` as a canary.

    With all of it, the release that served before stays warm for a rollback."""
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(name=environment_name)
        release = Release.objects.select_related("version__model__policy").get(pk=release_id)
        active = environment.deployments.filter(role=Role.ACTIVE).first()
        deployment, _ = Deployment.objects.update_or_create(
            environment=environment, release=release,
            defaults={"role": Role.STOPPED, "traffic_percent": 0, "instance": instance_record(instance),
                      "endpoint": instance.url, "image": image})
        before = _shares(environment)
        if canary_percent is not None and active is not None and active.pk != deployment.pk:
            move_traffic(environment, {active: 100 - canary_percent, deployment: canary_percent})
            active.traffic_percent = 100 - canary_percent
            active.save(update_fields=["traffic_percent", "updated_at"])
            deployment.role, deployment.traffic_percent, action = Role.CANARY, canary_percent, "canary"
        else:
            move_traffic(environment, {deployment: 100})
            if active is not None and active.pk != deployment.pk:
                active.role, active.traffic_percent = Role.WARM, 0
                active.save(update_fields=["role", "traffic_percent", "updated_at"])
            deployment.role, deployment.traffic_percent, action = Role.ACTIVE, 100, "deploy"
        deployment.save()
        _record_traffic(environment, action, actor, reason or f"release #{release_id}", before)
        for old in _retire_old_warm(environment, release.version.model.policy.keep_warm):
            transaction.on_commit(partial(stop_instance_later, old))
        return deployment


def end_canary(environment_name: str, *, promote: bool, actor: Actor, reason: str) -> Deployment:
    """Promote the canary to all traffic (the stable release stays warm), or take it out of service."""
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(name=environment_name)
        canary = environment.deployments.filter(role=Role.CANARY).first()
        active = environment.deployments.filter(role=Role.ACTIVE).first()
        if canary is None or active is None:
            raise TransitionError(f"{environment_name} has no canary")
        before = _shares(environment)
        winner, loser = (canary, active) if promote else (active, canary)
        move_traffic(environment, {winner: 100})
        loser.role, loser.traffic_percent = (Role.WARM if promote else Role.STOPPED), 0
        loser.save(update_fields=["role", "traffic_percent", "updated_at"])
        winner.role, winner.traffic_percent = Role.ACTIVE, 100
        winner.save(update_fields=["role", "traffic_percent", "updated_at"])
        _record_traffic(environment, "promote" if promote else "rollback", actor, reason, before)
        if not promote:
            transaction.on_commit(lambda: stop_instance_later(loser))
        return winner


def live_at(environment: Environment, at: datetime) -> tuple[TrafficChange | None, list[Release]]:
    """What served in `environment` at moment `at`, from the record of traffic changes."""
    change = environment.traffic_changes.filter(at__lte=at).order_by("-at", "-id").first()
    if change is None:
        return None, []
    ids = [int(k) for k, share in change.shares.items() if share > 0]
    releases = Release.objects.filter(pk__in=ids).select_related("version__model")
    return change, sorted(releases, key=lambda r: -change.shares[str(r.pk)])
