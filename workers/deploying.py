"""Starting a release's model server in an environment, and keeping the proxy in step with the records."""

from django.conf import settings

from releases import deploys, store
from releases.models import Artifact, Deployment, Environment, Release
from workers.shipping.docker_target import DockerTarget
from workers.shipping.local_target import LocalTarget
from workers.shipping.ports import PortAllocator
from workers.shipping.proxy import ensure_running, servers
from workers.shipping.targets import Instance, InstanceSpec, Target

_ports = PortAllocator()
READY_TIMEOUT_S = 120


def target_for(environment: Environment) -> Target:
    if environment.target == "docker":
        return DockerTarget(memory=settings.SLIPWAY_CONTAINER_MEMORY, cpus=settings.SLIPWAY_CONTAINER_CPUS)
    return LocalTarget(log_dir=settings.SLIPWAY_SERVING_DIR / "logs")


def serving_artifact(release: Release) -> Artifact:
    """What a release serves: the chosen candidate, else the converted ONNX model, else the original."""
    if release.chosen_artifact_id:
        return release.chosen_artifact
    converted = release.artifacts.filter(kind=Artifact.Kind.ONNX_FP32, error="").first()
    return converted or release.version.artifact


def launch(release: Release, environment: Environment) -> Instance:
    """Start the release's server and wait for it to pass its health check (else HealthCheckFailed)."""
    artifact = serving_artifact(release)
    taken = [d.instance.get("port") for d in Deployment.objects.exclude(role=Deployment.Role.STOPPED)]
    spec = InstanceSpec(
        release_id=str(release.pk), environment=environment.name, port=_ports.allocate(exclude=taken),
        model_name=release.version.model.name, version=release.version.label, sha256=artifact.sha256,
        model_path=store.path_for(artifact.sha256), image=release.image or None)
    return target_for(environment).launch(spec, timeout=READY_TIMEOUT_S)


def ensure_proxy() -> None:
    """Start HAProxy if needed; a freshly started one gets the traffic the records say back."""
    config = deploys.proxy_config()
    ensure_running(config)
    for environment in Environment.objects.all():
        serving = list(environment.deployments.filter(traffic_percent__gt=0))
        if serving and not any(state.serving for state in servers(config, environment.name)):
            deploys.move_traffic(environment, {d: d.traffic_percent for d in serving})


def stop(deployment: Deployment) -> None:
    """Take a deployment's instance out of the proxy and stop it."""
    from workers.shipping.proxy import detach

    instance = deploys.instance_of(deployment)
    detach(deploys.proxy_config(), deployment.environment.name, instance)
    target_for(deployment.environment).stop(instance)
