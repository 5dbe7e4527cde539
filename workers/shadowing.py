"""Placing a release in shadow in an environment, and ending it (run from `manage.py shadow`)."""

import contextlib

from django.db import transaction
from django.utils import timezone

from monitoring.models import ShadowRun
from monitoring.shadowing import active_deployment, collect_one
from releases import routing
from releases.models import Deployment, Environment, Release
from releases.routing import target_for
from shipping import shadow
from shipping.targets import Instance
from workers.deploying import control_token, launch


class ShadowRefused(ValueError):
    """The shadow cannot be placed; the message says why."""


def start(environment: Environment, release: Release, share: float, **policy: float) -> ShadowRun:
    """Start the release's own server (outside the proxy: it gets no live traffic) and have the
    environment's active server copy ``share`` of its requests to it."""
    active = (Deployment.objects.filter(service__environment=environment, service__model=release.version.model,
                                        role=Deployment.Role.ACTIVE).select_related("release").first())
    if active is None:
        raise ShadowRefused(f"no release of {release.version.model.name} is active in {environment}")
    if active.release_id == release.pk:
        raise ShadowRefused(f"release #{release.pk} is the active release in {environment}")
    if ShadowRun.objects.filter(environment=environment, stopped_at=None).exists():
        raise ShadowRefused(f"{environment} already has a release in shadow; stop it first")
    if not 0 < share <= 1:
        raise ShadowRefused(f"share must be in (0, 1], not {share}")
    instance = launch(release, environment)
    try:
        token = control_token(environment.name, str(active.release_id))
        shadow.start(routing.instance_of(active), token, instance, share, release.version.model.task)
        with transaction.atomic():
            return ShadowRun.objects.create(environment=environment, active=active.release, shadow=release,
                                            share=share, instance=routing.instance_record(instance),
                                            started_at=timezone.now(), **policy)
    except BaseException:
        target_for(environment).stop(instance, timeout=5)
        raise


def stop(run: ShadowRun) -> ShadowRun:
    """Take the last figures, stop the copying and the shadow's server."""
    deployment = active_deployment(run)
    if deployment is not None:
        collect_one(run)
        with contextlib.suppress(shadow.ShadowError):  # a gone or restarted active server copies nothing
            shadow.stop(routing.instance_of(deployment), control_token(run.environment.name, str(run.active_id)))
    target_for(run.environment).stop(Instance(**run.instance), timeout=10)
    run.stopped_at = timezone.now()
    run.save(update_fields=["stopped_at"])
    return run
