"""A release packaged as an image and served by a container in staging, through the pipeline."""

import docker
import pytest
import requests
from django.conf import settings

from releases.models import Deployment, Environment, Release
from tests.conftest import build_form, token_client, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def engine() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker Engine is not reachable ({exc}); start it with deploy/docker/start-dockerd.sh")
    return client


def test_the_staging_container_runs_the_release_image_non_root_and_read_only(celery_worker, engine, users):
    Environment.objects.filter(name="staging").update(target="docker")
    ci, alice = token_client(users["ci"]), token_client(users["alice"])
    response = ci.post("/api/v1/builds/", build_form(), format="multipart")
    release_id = response.json()["release"]["id"]
    wait_for_status(release_id, "awaiting_approval")
    alice.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json")
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=240)
    assert release.stages.get(name="deploy_staging").status == "succeeded", release.failure_reason

    release = Release.objects.get(pk=release_id)
    image = engine.images.get(release.image)
    assert release.image_digest == image.id
    assert image.labels["io.slipway.release-id"] == str(release_id)
    assert image.labels["io.slipway.sha256"] == release.chosen_artifact.sha256
    deployment = Deployment.objects.get(service__environment__name="staging", release=release)
    container = engine.containers.get(deployment.instance["handle"])
    config = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert config["ReadonlyRootfs"] is True and config["Memory"] > 0 and config["NanoCpus"] > 0
    answer = requests.get(f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}/v2/models/digits/ready", timeout=5)
    assert answer.status_code == 200 and answer.headers["X-Release-Id"] == str(release_id)
    container.remove(force=True)
