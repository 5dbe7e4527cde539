"""Starting a release's model server in an environment, stopping one, and starting again the ones that died."""

import hashlib
import hmac
import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from releases import routing
from releases.candidates import serving_artifact
from releases.models import Deployment, Environment, Release
from releases.storage import get_store, work_root
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec

log = logging.getLogger(__name__)
_ports = PortAllocator()
READY_TIMEOUT_S = 120


def monitoring_profile(release: Release) -> Path | None:
    """The release's monitoring profile (workers/ml/profile.py), made once per model and evaluation data.

    None when it cannot be made: the release then serves without input summaries or range checks."""
    from workers.ml.evalset import EvalDataError, load_evalset
    from workers.ml.profile import write_profile
    from workers.ml.validate import ModelInvalid

    artifact, eval_data = serving_artifact(release), release.version.eval_data
    destination = work_root() / "profiles" / f"{artifact.sha256}-{eval_data.sha256}.json"
    store = get_store()
    try:
        return write_profile(store.local_path(artifact.sha256), load_evalset(store.local_path(eval_data.sha256)),
                             release.version.model.task, destination)
    except (EvalDataError, ModelInvalid, OSError) as exc:
        log.warning("release %s serves without a monitoring profile: %s", release.pk, exc)
        return None


def control_token(environment: str, release_id: str) -> str:
    """The bearer token a release's server in an environment takes control requests with (placing a
    shadow): derived from the secret key, so it is never stored and Slipway can always recompute it."""
    message = f"serving-control:{environment}:{release_id}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def launch(release: Release, environment: Environment, port: int | None = None) -> Instance:
    """Start the release's server and wait for it to pass its health check (else HealthCheckFailed)."""
    artifact = serving_artifact(release)
    taken = [d.instance.get("port") for d in Deployment.objects.filter(stopped_at=None)]  # stopping ones too
    spec = InstanceSpec(
        release_id=str(release.pk), environment=environment.name, port=port or _ports.allocate(exclude=taken),
        model_name=release.version.model.name, version=release.version.label, sha256=artifact.sha256,
        model_path=get_store().local_path(artifact.sha256), image=release.image or None,
        profile_path=monitoring_profile(release), control_token=control_token(environment.name, str(release.pk)))
    return routing.target_for(environment).launch(spec, timeout=READY_TIMEOUT_S)


def stop(deployment_id: int) -> bool:
    """Take a deployment that left service out of its service's backend, stop its instance and confirm it
    gone (the sweeper sends the stop again until then). False if it serves again meanwhile."""
    deployment = Deployment.objects.select_related("service__environment", "service__model").get(pk=deployment_id)
    if deployment.role != Deployment.Role.STOPPED:
        return False
    routing.detach(deployment)
    routing.target_for(deployment.service.environment).stop(routing.instance_of(deployment))
    Deployment.objects.filter(pk=deployment_id, role=Deployment.Role.STOPPED, stopped_at=None).update(
        stopped_at=timezone.now())
    return True


def revive_local_servers() -> list[str]:
    """Start again, on its old port, each local model server in service that died; HAProxy (started again
    by ensure_proxy when it died) finds it there through its health checks. Returns what was started."""
    revived = []
    for deployment in (Deployment.objects.exclude(role=Deployment.Role.STOPPED)
                       .filter(service__environment__target="local")
                       .select_related("service__environment", "release__version__model")):
        target, old = routing.target_for(deployment.environment), routing.instance_of(deployment)
        if target.is_alive(old):
            continue
        log.error("the model server of release %s in %s (pid %s, port %s) is gone; starting it again",
                  deployment.release_id, deployment.environment.name, old.handle, old.port)
        target.stop(old)  # forgets the dead one (its pid registration)
        instance = launch(deployment.release, deployment.environment, port=old.port)
        kept = Deployment.objects.filter(pk=deployment.pk, role=deployment.role, instance__handle=old.handle).update(
            instance=routing.instance_record(instance), endpoint=instance.url)
        if not kept:  # stopped or replaced meanwhile: the new server is not wanted
            target.stop(instance, timeout=5)
            continue
        revived.append(f"release {deployment.release_id} in {deployment.environment.name} on port {old.port}")
    return revived
