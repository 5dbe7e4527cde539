"""Where the records meet the router: which target runs a service's instances, and moving its traffic.

A service's traffic moves through HAProxy's runtime API (one backend per model per environment, see
shipping/proxy.py), or through its own rule of the environment's HTTPRoute on a Kubernetes target.
Only the service's own backend or rule changes: no other model is touched.
"""

import hashlib
import hmac
from dataclasses import asdict

from django.conf import settings

from releases.models import Deployment, Environment, Service
from shipping.docker_target import DockerTarget
from shipping.kubernetes.manifests import Cluster
from shipping.kubernetes.target import KubernetesTarget, api_client
from shipping.local_target import LocalTarget
from shipping.proxy import ProxyConfig, ensure_running, remove_route, servers, set_traffic
from shipping.targets import Instance, Target


def proxy_config(only: Environment | None = None) -> ProxyConfig:
    """The HAProxy that fronts every environment, one stable port each (Environment.proxy_port); with
    `only`, as far as one environment's routes go (a traffic move needs no other, nor a query)."""
    ports = ({only.name: only.proxy_port} if only is not None
             else dict(Environment.objects.exclude(target="kubernetes").values_list("name", "proxy_port")))
    return ProxyConfig(state_dir=settings.SLIPWAY_PROXY_DIR, environments=ports,
                       bind_host=settings.SLIPWAY_PROXY_HOST, backends=settings.SLIPWAY_PROXY_BACKENDS)


def kubernetes_target() -> KubernetesTarget:
    cluster = Cluster(namespace=settings.SLIPWAY_K8S_NAMESPACE, gateway=settings.SLIPWAY_K8S_GATEWAY,
                      replicas=settings.SLIPWAY_K8S_REPLICAS, memory=settings.SLIPWAY_CONTAINER_MEMORY,
                      cpus=settings.SLIPWAY_CONTAINER_CPUS)
    return KubernetesTarget(api_client(settings.SLIPWAY_KUBECONFIG), cluster)


def target_for(environment: Environment) -> Target:
    if environment.target == "kubernetes":
        return kubernetes_target()
    if environment.target == "docker":
        return DockerTarget(memory=settings.SLIPWAY_CONTAINER_MEMORY, cpus=settings.SLIPWAY_CONTAINER_CPUS,
                            owner=instance_owner())
    return LocalTarget(log_dir=settings.SLIPWAY_SERVING_DIR / "logs")


def instance_owner() -> str:
    """This installation's mark on the containers it starts (DockerTarget's owner label): derived from its
    secret key, so it is never stored, and two installations sharing one Docker Engine never take each
    other's containers for their own."""
    return hmac.new(settings.SECRET_KEY.encode(), b"slipway-instance-owner", hashlib.sha256).hexdigest()[:16]


def instance_of(deployment: Deployment) -> Instance:
    return Instance(**deployment.instance)


def instance_record(instance: Instance) -> dict:
    return asdict(instance)


def address(service: Service) -> str:
    """Where clients reach the service: its path on the environment's stable address."""
    environment = service.environment
    if environment.target == "kubernetes":
        return service.path
    return f"http://{settings.SLIPWAY_PROXY_HOST}:{environment.proxy_port}{service.path}"


def move_traffic(service: Service, shares: dict[Deployment, int]) -> None:
    """Set the weights of the service's own backend (its own HTTPRoute rule on a cluster): each
    deployment gets its share, every other instance of the service none."""
    weights = {instance_of(d): share for d, share in shares.items()}
    environment, model = service.environment, service.model.name
    if environment.target == "kubernetes":
        kubernetes_target().route_traffic(environment.name, model, weights)
        return
    set_traffic(proxy_config(environment), environment.name, model, weights)


def detach(deployment: Deployment) -> None:
    """Take a deployment's instance out of its service's backend (before it stops)."""
    from shipping.proxy import detach as detach_instance

    service = deployment.service
    environment = service.environment
    if environment.target != "kubernetes":  # a route no longer names a stopped release
        detach_instance(proxy_config(environment), environment.name, service.model.name, instance_of(deployment))


def unroute(service: Service) -> None:
    """Stop routing the service's path: its requests get the proxy's 404 from now on."""
    if service.environment.target == "kubernetes":
        kubernetes_target().remove_route(service.environment.name, service.model.name)
    else:
        remove_route(proxy_config(service.environment), service.environment.name, service.model.name)


def ensure_proxy() -> None:
    """Start HAProxy if needed; a freshly started one gets the routes and traffic the records say back."""
    config = proxy_config()
    if not config.environments:  # a cluster's Gateway routes every environment
        return
    ensure_running(config)
    services = (Service.objects.filter(environment__name__in=list(config.environments))
                .select_related("environment", "model"))
    for service in services:
        serving = list(service.deployments.filter(traffic_percent__gt=0))
        if serving and not any(state.serving for state in servers(config, service.environment.name,
                                                                   service.model.name)):
            move_traffic(service, {d: d.traffic_percent for d in serving})
