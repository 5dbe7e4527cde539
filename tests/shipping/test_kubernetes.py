"""The Kubernetes target: manifests validated against the Kubernetes schema (kubernetes-validate) and,
for the HTTPRoute (a CRD), against the CRD's constraints for the fields written (jsonschema); then
the official client's calls and bodies against a recording stand-in for the API server (kube_stub.py).
No cluster runs here: nothing is scheduled, pulled or probed."""

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from releases import deploys
from releases.actors import Actor
from releases.models import Deployment, Environment, Release, StageRun
from releases.routing import target_for
from shipping.kubernetes import manifests
from shipping.kubernetes.manifests import Cluster, ManifestError
from shipping.targets import HealthCheckFailed, InstanceSpec
from tests.conftest import build_form, make_user, token_client
from tests.pages.data import make_model, make_release, make_version
from tests.shipping.kube_stub import kube_stub

K8S_VERSION = "1.33.0"
DIGEST = "registry.example.com/slipway-release@sha256:" + "ab" * 32
CLUSTER = Cluster(namespace="models", gateway="infra/public", replicas=2, memory="512m", cpus=0.5)
ROUTE_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "httproute_v1_subset.schema.json").read_text())
NS = "/namespaces/models"


def check_route(route: dict) -> None:
    jsonschema.validate(route, ROUTE_SCHEMA)
    for rule in route["spec"]["rules"]:  # the CRD's CEL rule: a Service backend names its port
        assert all("port" in ref for ref in rule["backendRefs"] if ref["group"] == "" and ref["kind"] == "Service")


def render(release_id: str = "12", image: str = DIGEST) -> tuple[dict, dict]:
    return (manifests.deployment(CLUSTER, environment="production", release_id=release_id, image=image,
                                 model_name="digits", version="1.0.1"),
            manifests.service(CLUSTER, environment="production", release_id=release_id))


def test_a_release_renders_to_a_valid_locked_down_deployment_and_service():
    deployment, service = render()
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    kubernetes_validate.validate(service, K8S_VERSION, strict=True)
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "slipway-production-r12"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == DIGEST
    assert container["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"cpu": "500m", "memory": "512Mi"}}
    assert container["readinessProbe"]["httpGet"] == {"port": "http", "scheme": "HTTP", "path": "/readyz"}
    assert container["livenessProbe"]["httpGet"] == {"port": "http", "scheme": "HTTP", "path": "/healthz"}
    assert pod["automountServiceAccountToken"] is False
    assert deployment["spec"]["replicas"] == 2
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == {
        "slipway.io/environment": "production", "slipway.io/release-id": "12"}


def test_each_model_renders_to_its_own_weighted_http_route_on_its_path():
    route = manifests.http_route(CLUSTER, environment="production", model="digits", weights={"12": 90, "13": 10})
    check_route(route)
    assert route["metadata"] == {"name": "slipway-production-digits", "namespace": "models",
                                 "labels": {"app.kubernetes.io/managed-by": "slipway",
                                            "slipway.io/environment": "production", "slipway.io/model": "digits"}}
    assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/digits"}}]
    other = manifests.http_route(CLUSTER, environment="production", model="wine", weights={"14": 100})
    assert other["metadata"]["name"] == "slipway-production-wine"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "public", "namespace": "infra"}]
    assert [(b["name"], b["port"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("slipway-production-r12", 8000, 90), ("slipway-production-r13", 8000, 10)]


def test_what_cannot_be_rendered_is_refused():
    with pytest.raises(ManifestError, match="is not pinned by digest"):
        render(image="slipway-release:digits-12")
    with pytest.raises(ManifestError, match="at most 16 backends"):
        manifests.http_route(CLUSTER, environment="production", model="digits",
                             weights={str(i): 5 for i in range(17)})
    with pytest.raises(ManifestError, match="expected a number with b, k, m or g"):
        manifests.memory_quantity("lots")
    # The validators catch what a broken renderer would send.
    broken = render()[0]
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"cores": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    route = manifests.http_route(CLUSTER, environment="production", model="digits", weights={"12": 100})
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 2_000_000
    with pytest.raises(jsonschema.ValidationError):
        check_route(route)


@pytest.mark.django_db
def test_releases_are_applied_traffic_moves_and_rollback_moves_it_back(settings, tmp_path):
    on_call = make_user("olga", "on-call")
    model = make_model(keep_warm=2)
    old, new = (make_release(make_version(model, label, on_call), status="released", image=DIGEST)
                for label in ("1.0.0", "1.0.1"))
    Environment.objects.filter(name="production").update(target="kubernetes")
    production = Environment.objects.get(name="production")
    with kube_stub() as stub:
        settings.SLIPWAY_KUBECONFIG = str(stub.kubeconfig(tmp_path))
        settings.SLIPWAY_K8S_NAMESPACE, settings.SLIPWAY_K8S_GATEWAY = "models", "infra/public"
        settings.SLIPWAY_K8S_REPLICAS, settings.SLIPWAY_CONTAINER_MEMORY = 2, "512m"
        settings.SLIPWAY_CONTAINER_CPUS = 0.5

        target = target_for(production)
        instances = {}
        for release in (old, new):
            spec = InstanceSpec(release_id=str(release.pk), environment="production", port=0, model_name="digits",
                                version=release.version.label, image=DIGEST)
            instances[release] = target.launch(spec, timeout=5)
        assert instances[old].url == f"http://slipway-production-r{old.pk}.models.svc:8000"
        for release in (old, new):
            deploys.put_in_service(release.pk, "production", instances[release], canary_percent=None,
                                   actor=Actor.person(on_call, None))
        deploys.rollback("production", "digits", on_call, "p95 doubled")
        target.stop(instances[new])

    apps, core = f"/apis/apps/v1{NS}/deployments", f"/api/v1{NS}/services"
    route = f"/apis/gateway.networking.k8s.io/v1{NS}/httproutes"
    names = {r: f"slipway-production-r{r.pk}" for r in (old, new)}
    assert stub.calls() == [
        ("POST", apps), ("POST", core), ("GET", f"{apps}/{names[old]}/status"),
        ("POST", apps), ("POST", core), ("GET", f"{apps}/{names[new]}/status"),
        ("PATCH", f"{route}/slipway-production-digits"), ("POST", route),  # the first move creates the route
        ("PATCH", f"{route}/slipway-production-digits"),
        ("GET", f"{apps}/{names[old]}/status"),  # the warm release is checked ready before the rollback
        ("PATCH", f"{route}/slipway-production-digits"),  # the rollback
        ("DELETE", f"{core}/{names[new]}"), ("DELETE", f"{apps}/{names[new]}")]
    bodies = [r.body for r in stub.requests]
    for body in bodies[0:2] + bodies[3:5]:
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    assert bodies[0] == manifests.deployment(CLUSTER, environment="production", release_id=str(old.pk),
                                             image=DIGEST, model_name="digits", version="1.0.0")
    moves = [r for r in stub.requests if r.path.endswith("/slipway-production-digits")]
    for move in moves:
        check_route(move.body)
    assert {r.content_type for r in moves} == {"application/merge-patch+json"}
    assert [[(b["name"], b["weight"]) for b in m.body["spec"]["rules"][0]["backendRefs"]] for m in moves] == [
        [(names[old], 100)], [(names[new], 100)], [(names[old], 100)]]
    assert Deployment.objects.get(service__environment=production, role="active").release == old


@pytest.mark.django_db
def test_a_rollout_that_never_becomes_ready_fails_with_the_reason(settings, tmp_path):
    Environment.objects.filter(name="production").update(target="kubernetes")
    with kube_stub() as stub:
        stub.ready = False
        settings.SLIPWAY_KUBECONFIG = str(stub.kubeconfig(tmp_path))
        settings.SLIPWAY_K8S_NAMESPACE, settings.SLIPWAY_K8S_REPLICAS = "models", 2
        target = target_for(Environment.objects.get(name="production"))
        spec = InstanceSpec(release_id="7", environment="production", port=0, model_name="digits",
                            version="1.0.0", image=DIGEST)
        with pytest.raises(HealthCheckFailed) as failed:
            target.launch(spec, timeout=1.5)
    assert "0 of 2 replicas ready after 2 s" in str(failed.value)
    assert "release 7" in str(failed.value)
    apps = f"/apis/apps/v1{NS}/deployments/slipway-production-r7"
    assert stub.calls()[:3] == [("POST", f"/apis/apps/v1{NS}/deployments"), ("POST", f"/api/v1{NS}/services"),
                                ("GET", f"{apps}/status")]


@pytest.mark.django_db
def test_a_deploy_stage_whose_rollout_never_becomes_ready_fails_with_the_reason(users, settings, tmp_path,
                                                                                 monkeypatch):
    from workers.runner import run_stage

    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    Environment.objects.update(target="kubernetes")  # a cluster's Gateway serves both: no HAProxy
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    release_id = response.json()["release"]["id"]
    StageRun.objects.filter(release_id=release_id).update(status="succeeded")
    StageRun.objects.filter(release_id=release_id, name="deploy_staging").update(status="queued")
    StageRun.objects.filter(release_id=release_id, name__in=["production_gate", "canary"]).update(status="pending")
    Release.objects.filter(pk=release_id).update(status="shipping", image=DIGEST)
    monkeypatch.setattr("workers.deploying.READY_TIMEOUT_S", 1.5)
    with kube_stub() as stub:
        stub.ready = False
        settings.SLIPWAY_KUBECONFIG = str(stub.kubeconfig(tmp_path))
        settings.SLIPWAY_K8S_NAMESPACE, settings.SLIPWAY_K8S_REPLICAS = "models", 2
        run_stage(release_id, "deploy_staging")
    stage = StageRun.objects.get(release_id=release_id, name="deploy_staging")
    release = Release.objects.get(pk=release_id)
    name = f"slipway-staging-r{release_id}"
    assert (stage.status, stage.error) == ("failed", f"release {release_id} (kubernetes {name}) at http://{name}"
                                           ".models.svc:8000 failed its health check: 0 of 2 replicas ready after "
                                           "2 s\n--- last log lines ---\n(no pods)")
    assert (release.status, release.failure_reason) == ("failed", f"deploy_staging: {stage.error}")
    assert list(StageRun.objects.filter(release_id=release_id, name__in=["production_gate", "canary"])
                .values_list("status", flat=True)) == ["skipped", "skipped"]
    assert stub.calls()[-2:] == [("DELETE", f"/api/v1{NS}/services/{name}"),  # nothing left running
                                 ("DELETE", f"/apis/apps/v1{NS}/deployments/{name}")]
    assert not Deployment.objects.filter(release_id=release_id).exists()
