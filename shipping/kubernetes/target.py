"""Applying the manifests with the official Kubernetes client (SLIPWAY_KUBECONFIG, or "in-cluster").

A release's instance is its Deployment and Service; it is ready when the Deployment reports all its
replicas ready (the kubelet runs the readiness probe on /readyz). Moving a model's traffic rewrites the
backendRefs weights of that model's own HTTPRoute in the environment; a rollback is the same move back, and the release
that served before is still running, so it takes what the Gateway needs to reload its routes.
The deploy worker runs inside the cluster when it smoke-tests and watches canaries (Service names).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from shipping.kubernetes import manifests
from shipping.kubernetes.manifests import Cluster
from shipping.targets import Instance, InstanceSpec, Target, TargetError

ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def api_client(kubeconfig: str) -> client.ApiClient:
    """A client for the configured cluster: a kubeconfig file's path, or "in-cluster"."""
    if not kubeconfig:
        raise TargetError("an environment uses the kubernetes target but no cluster is configured "
                          "(set SLIPWAY_KUBECONFIG to a kubeconfig file or to in-cluster)")
    if kubeconfig == "in-cluster":
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig)


def _create_or_patch(create, patch, namespace: str, body: dict) -> None:  # noqa: ANN001 - client methods
    try:
        create(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise TargetError(f"Kubernetes refused {body['kind']} {body['metadata']['name']}: "
                              f"{error.status} {error.reason}") from error
        patch(body["metadata"]["name"], namespace, body)


class KubernetesTarget(Target):
    kind = "kubernetes"

    def __init__(self, api: client.ApiClient, cluster: Cluster) -> None:
        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.custom, self.cluster = client.CustomObjectsApi(api), cluster

    def start(self, spec: InstanceSpec) -> Instance:
        if spec.image is None:
            raise TargetError(f"release {spec.release_id}: a Kubernetes instance needs an image in a registry")
        try:
            deployment = manifests.deployment(self.cluster, environment=spec.environment,
                                              release_id=spec.release_id, image=spec.image,
                                              model_name=spec.model_name, version=spec.version,
                                              threads=spec.threads, intra_op_threads=spec.intra_op_threads)
        except manifests.ManifestError as error:
            raise TargetError(str(error)) from None
        service = manifests.service(self.cluster, environment=spec.environment, release_id=spec.release_id)
        namespace = self.cluster.namespace
        _create_or_patch(self.apps.create_namespaced_deployment, self.apps.patch_namespaced_deployment,
                         namespace, deployment)
        _create_or_patch(self.core.create_namespaced_service, self.core.patch_namespaced_service, namespace, service)
        name = deployment["metadata"]["name"]
        return Instance(self.kind, name, spec.release_id, spec.environment, f"{name}.{namespace}.svc",
                        manifests.SERVING_PORT)

    def is_alive(self, instance: Instance) -> bool:
        try:
            self.apps.read_namespaced_deployment(instance.handle, self.cluster.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def wait_ready(self, instance: Instance, timeout: float = 60.0) -> None:
        """Ready when every replica passes its readiness probe (the kubelet checks /readyz)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.apps.read_namespaced_deployment_status(instance.handle, self.cluster.namespace).status
            except ApiException as error:
                self._fail(instance, f"the Deployment could not be read: {error.status} {error.reason}")
            ready = (status.ready_replicas if status is not None else 0) or 0
            if ready >= self.cluster.replicas:
                return
            if time.monotonic() > deadline:
                self._fail(instance, f"{ready} of {self.cluster.replicas} replicas ready "
                                     f"after {timeout:.0f} s")
            time.sleep(1)

    def stop(self, instance: Instance, timeout: float = 30.0) -> None:
        """Delete the Service and the Deployment; Kubernetes drains the pods (SIGTERM, then the grace period)."""
        namespace = self.cluster.namespace
        for delete in (self.core.delete_namespaced_service, self.apps.delete_namespaced_deployment):
            try:
                delete(instance.handle, namespace)
            except ApiException as error:
                if error.status != 404:
                    raise TargetError(f"deleting {instance.handle}: {error.status} {error.reason}") from error

    def logs(self, instance: Instance, lines: int = 40) -> str:
        pods = self.core.list_namespaced_pod(self.cluster.namespace, label_selector=",".join(
            f"{k}={v}" for k, v in manifests.selector(instance.environment, instance.release_id).items())).items
        if not pods:
            return "(no pods)"
        name = pods[0].metadata.name if pods[0].metadata else None
        return self.core.read_namespaced_pod_log(name or "", self.cluster.namespace, tail_lines=lines)

    def route_traffic(self, environment: str, model: str, weights: Mapping[Instance, int]) -> dict:
        """Point the model's HTTPRoute in the environment at these instances with these shares; returns it."""
        try:
            route = manifests.http_route(self.cluster, environment=environment, model=model,
                                         weights={i.release_id: share for i, share in weights.items()})
        except manifests.ManifestError as error:
            raise TargetError(str(error)) from None
        name, namespace = route["metadata"]["name"], self.cluster.namespace
        try:
            self.custom.patch_namespaced_custom_object(ROUTE_GROUP, ROUTE_VERSION, namespace, ROUTE_PLURAL, name,
                                                       route)
        except ApiException as error:
            if error.status != 404:
                raise TargetError(f"Kubernetes refused HTTPRoute {name}: {error.status} {error.reason}") from error
            self.custom.create_namespaced_custom_object(ROUTE_GROUP, ROUTE_VERSION, namespace, ROUTE_PLURAL, route)
        return route

    def remove_route(self, environment: str, model: str) -> None:
        """Delete the model's HTTPRoute: the Gateway no longer routes its path."""
        name = manifests.route_name(environment, model)
        try:
            self.custom.delete_namespaced_custom_object(ROUTE_GROUP, ROUTE_VERSION, self.cluster.namespace,
                                                        ROUTE_PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise TargetError(f"Kubernetes refused to delete HTTPRoute {name}: {error.status} "
                                  f"{error.reason}") from error
