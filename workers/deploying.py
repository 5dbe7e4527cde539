"""Starting a release's model server in an environment, and keeping the proxy in step with the records."""

import hashlib
import hmac
import logging
from pathlib import Path

from django.conf import settings

from releases import deploys
from releases.models import Artifact, Deployment, Environment, Release
from releases.storage import get_store, work_root
from shipping.docker_target import DockerTarget
from shipping.kubernetes.manifests import Cluster
from shipping.kubernetes.target import KubernetesTarget, api_client
from shipping.local_target import LocalTarget
from shipping.ports import PortAllocator
from shipping.proxy import ensure_running, servers
from shipping.targets import Instance, InstanceSpec, Target

log = logging.getLogger(__name__)
_ports = PortAllocator()
READY_TIMEOUT_S = 120


def kubernetes_target() -> KubernetesTarget:
    cluster = Cluster(namespace=settings.SLIPWAY_K8S_NAMESPACE, gateway=settings.SLIPWAY_K8S_GATEWAY,
                      replicas=settings.SLIPWAY_K8S_REPLICAS, memory=settings.SLIPWAY_CONTAINER_MEMORY,
                      cpus=settings.SLIPWAY_CONTAINER_CPUS)
    return KubernetesTarget(api_client(settings.SLIPWAY_KUBECONFIG), cluster)


def target_for(environment: Environment) -> Target:
    if environment.target == "kubernetes":
        return kubernetes_target()
    if environment.target == "docker":
        return DockerTarget(memory=settings.SLIPWAY_CONTAINER_MEMORY, cpus=settings.SLIPWAY_CONTAINER_CPUS)
    return LocalTarget(log_dir=settings.SLIPWAY_SERVING_DIR / "logs")


def serving_artifact(release: Release) -> Artifact:
    """What a release serves: the chosen candidate, else the converted ONNX model, else the original."""
    if release.chosen_artifact is not None:
        return release.chosen_artifact
    converted = release.artifacts.filter(kind=Artifact.Kind.ONNX_FP32, error="").first()
    return converted or release.version.artifact


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
    taken = [d.instance.get("port") for d in Deployment.objects.exclude(role=Deployment.Role.STOPPED)]
    spec = InstanceSpec(
        release_id=str(release.pk), environment=environment.name, port=port or _ports.allocate(exclude=taken),
        model_name=release.version.model.name, version=release.version.label, sha256=artifact.sha256,
        model_path=get_store().local_path(artifact.sha256), image=release.image or None,
        profile_path=monitoring_profile(release), control_token=control_token(environment.name, str(release.pk)))
    return target_for(environment).launch(spec, timeout=READY_TIMEOUT_S)


def ensure_proxy() -> None:
    """Start HAProxy if needed; a freshly started one gets the traffic the records say back."""
    environments = list(Environment.objects.exclude(target="kubernetes"))
    if not environments:  # a cluster's Gateway routes every environment
        return
    config = deploys.proxy_config()
    ensure_running(config)
    for environment in environments:
        serving = list(environment.deployments.filter(traffic_percent__gt=0))
        if serving and not any(state.serving for state in servers(config, environment.name)):
            deploys.move_traffic(environment, {d: d.traffic_percent for d in serving})


def stop(deployment: Deployment) -> None:
    """Take a deployment's instance out of the proxy and stop it."""
    from shipping.proxy import detach

    instance = deploys.instance_of(deployment)
    if deployment.environment.target != "kubernetes":  # a route no longer names a stopped release
        detach(deploys.proxy_config(), deployment.environment.name, instance)
    target_for(deployment.environment).stop(instance)


def revive_local_servers() -> list[str]:
    """Start again, on its old port, each local model server in service that died; HAProxy (started again
    by ensure_proxy when it died) finds it there through its health checks. Returns what was started."""
    revived = []
    for deployment in (Deployment.objects.exclude(role=Deployment.Role.STOPPED)
                       .filter(environment__target="local").select_related("environment", "release__version__model")):
        target, old = target_for(deployment.environment), deploys.instance_of(deployment)
        if target.is_alive(old):
            continue
        log.error("the model server of release %s in %s (pid %s, port %s) is gone; starting it again",
                  deployment.release_id, deployment.environment.name, old.handle, old.port)
        target.stop(old)  # forgets the dead one (its pid registration)
        instance = launch(deployment.release, deployment.environment, port=old.port)
        kept = Deployment.objects.filter(pk=deployment.pk, role=deployment.role, instance__handle=old.handle).update(
            instance=deploys.instance_record(instance), endpoint=instance.url)
        if not kept:  # stopped or replaced meanwhile: the new server is not wanted
            target.stop(instance, timeout=5)
            continue
        revived.append(f"release {deployment.release_id} in {deployment.environment.name} on port {old.port}")
    return revived
