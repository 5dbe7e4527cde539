"""Kubernetes manifests rendered from a release: plain dicts, the same ones the client sends.

Each release runs as a Deployment (non-root, read-only root filesystem, no capabilities, resource
limits, readiness and liveness probes on the serving runtime's /readyz and /healthz, the image
pinned by digest) behind a ClusterIP Service. Each model's service in an environment is one HTTPRoute
(Gateway API v1) attached to the configured Gateway: its one rule matches the model's path
(/v2/models/<model>) and its backendRefs weights are that model's traffic split, so moving one model's
traffic never rewrites another's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVING_PORT = 8000
SERVING_UID = 10001  # the user the release image runs as (shipping/image.py SERVING_USER)
PINNED_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_DOCKER_UNITS = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi"}
LABEL = "slipway.io/"


class ManifestError(ValueError):
    """A release or environment that cannot be rendered into valid manifests."""


@dataclass(frozen=True)
class Cluster:
    """Where and how releases run in the cluster."""

    namespace: str = "slipway"
    gateway: str = "slipway"  # the Gateway the routes attach to: "name" or "namespace/name"
    replicas: int = 1
    memory: str = "1g"  # Docker-style sizes, as SLIPWAY_CONTAINER_MEMORY
    cpus: float = 1.0
    tmp_size: str = "64Mi"


def dns_label(text: str) -> str:
    """A lower-case RFC 1123 label from any text (names of objects must be one)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    if not label:
        raise ManifestError(f"{text!r} gives no usable Kubernetes name")
    return label


def release_name(environment: str, release_id: str) -> str:
    return dns_label(f"slipway-{environment}-r{release_id}")


def route_name(environment: str, model: str) -> str:
    return dns_label(f"slipway-{environment}-{model}")


def memory_quantity(size: str) -> str:
    """Docker's "512m" or "1g" as a Kubernetes quantity ("512Mi", "1Gi")."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", size.strip().lower())
    if match is None:
        raise ManifestError(f"memory size {size!r}: expected a number with b, k, m or g")
    return match.group(1) + _DOCKER_UNITS[match.group(2) or "b"]


def cpu_quantity(cpus: float) -> str:
    millis = round(cpus * 1000)
    if millis <= 0:
        raise ManifestError(f"cpus must be above 0, not {cpus}")
    return f"{millis}m"


def _labels(environment: str, release_id: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "slipway-model", "app.kubernetes.io/managed-by": "slipway",
            f"{LABEL}environment": dns_label(environment), f"{LABEL}release-id": dns_label(release_id)}


def selector(environment: str, release_id: str) -> dict[str, str]:
    return {f"{LABEL}environment": dns_label(environment), f"{LABEL}release-id": dns_label(release_id)}


def deployment(cluster: Cluster, *, environment: str, release_id: str, image: str, model_name: str,
               version: str, threads: int = 8, intra_op_threads: int = 1) -> dict:
    if not PINNED_IMAGE.match(image):
        raise ManifestError(f"release {release_id}: image {image!r} is not pinned by digest (repository@sha256:…)")
    http_get = {"port": "http", "scheme": "HTTP"}
    container = {
        "name": "model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "SLIPWAY_HOST", "value": "0.0.0.0"},  # noqa: S104 (the pod's own network)
                {"name": "SLIPWAY_PORT", "value": str(SERVING_PORT)},
                {"name": "SLIPWAY_THREADS", "value": str(threads)},
                {"name": "SLIPWAY_INTRA_OP_THREADS", "value": str(intra_op_threads)}],
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {**http_get, "path": "/readyz"}, "periodSeconds": 5, "timeoutSeconds": 2,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {**http_get, "path": "/healthz"}, "periodSeconds": 10, "timeoutSeconds": 2,
                          "failureThreshold": 3},
        "startupProbe": {"httpGet": {**http_get, "path": "/healthz"}, "periodSeconds": 2, "failureThreshold": 60},
        "resources": {"requests": {"cpu": cpu_quantity(cluster.cpus), "memory": memory_quantity(cluster.memory)},
                      "limits": {"cpu": cpu_quantity(cluster.cpus), "memory": memory_quantity(cluster.memory)}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": SERVING_UID, "runAsGroup": SERVING_UID,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (in the container)
    }
    labels = _labels(environment, release_id)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": release_name(environment, release_id), "namespace": cluster.namespace,
                     "labels": labels,
                     "annotations": {f"{LABEL}model": model_name, f"{LABEL}version": version}},
        "spec": {
            "replicas": cluster.replicas,
            "selector": {"matchLabels": selector(environment, release_id)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": SERVING_UID, "runAsGroup": SERVING_UID,
                                        "fsGroup": SERVING_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": cluster.tmp_size}}],
                },
            },
        },
    }


def service(cluster: Cluster, *, environment: str, release_id: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": release_name(environment, release_id), "namespace": cluster.namespace,
                     "labels": _labels(environment, release_id)},
        "spec": {"type": "ClusterIP", "selector": selector(environment, release_id),
                 "ports": [{"name": "http", "port": SERVING_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def http_route(cluster: Cluster, *, environment: str, model: str, weights: dict[str, int]) -> dict:
    """One model's route in an environment: requests under /v2/models/<model> go to its releases;
    `weights` maps a release id to its share (0-100) of the model's traffic."""
    if not weights or any(not 0 <= share <= 100 for share in weights.values()):
        raise ManifestError(f"{environment}: shares must be 0-100 and name at least one release, not {weights}")
    if len(weights) > 16:
        raise ManifestError(f"{environment}: an HTTPRoute rule holds at most 16 backends, not {len(weights)}")
    gateway_namespace, _, gateway = cluster.gateway.rpartition("/")
    parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}
    if gateway_namespace:
        parent["namespace"] = gateway_namespace
    backends = [{"group": "", "kind": "Service", "name": release_name(environment, release_id),
                 "port": SERVING_PORT, "weight": share} for release_id, share in sorted(weights.items())]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": route_name(environment, model), "namespace": cluster.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "slipway",
                                f"{LABEL}environment": dns_label(environment), f"{LABEL}model": dns_label(model)}},
        "spec": {"parentRefs": [parent],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/v2/models/{model}"}}],
                            "backendRefs": backends}]},
    }
