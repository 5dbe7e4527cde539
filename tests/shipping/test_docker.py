"""Release images and containers on a real Docker Engine.

The base image is made with debootstrap the first time (about 2 minutes, then cached by the
engine); the dependencies image is built once per set of wheels.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import numpy as np
import openai
import pytest
import requests
from docker.errors import DockerException, NotFound

from releases import routing
from releases.models import Environment
from serving import oip
from serving.integrity import file_sha256
from shipping import proxy
from shipping.base_image import LOCAL_BASE_IMAGE, build_local_base_image
from shipping.docker_target import DockerTarget
from shipping.image import BuiltImage, ImageBuildError, ReleaseImageSpec, build_release_image, ensure_deps_image
from shipping.targets import HealthCheckFailed, InstanceSpec
from tests.serving.onnx_models import linear_model
from tests.shipping.conftest import ports
from tests.shipping.load import LINEAR_BODY


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        pytest.skip(f"Docker Engine is not reachable ({error}). Start it with: bash deploy/docker/start-dockerd.sh")
    build_local_base_image(client)
    yield client
    for image in client.images.list("slipway-release"):
        if any(tag.startswith("slipway-release:test-") for tag in image.tags):
            client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def build(client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    folder = tmp_path_factory.mktemp("images")

    def build_release(release_id: str, model: Path | None = None, seed: int = 0) -> BuiltImage:
        model = model or linear_model(folder / f"{release_id}.onnx", padding_megabytes=1, seed=seed)
        spec = ReleaseImageSpec(
            release_id=release_id,
            model_name="test",
            version=f"1.0.{seed}",
            model_path=model,
            sha256=file_sha256(model),
            base_image=LOCAL_BASE_IMAGE,
        )
        return build_release_image(client, spec)

    yield build_release


def test_release_images_share_every_layer_but_the_model(client: docker.DockerClient, build: object) -> None:
    first, second = build("r1", seed=1), build("r2", seed=2)
    assert first.tag == "slipway-release:test-r1"
    assert first.labels == client.images.get(first.tag).labels | first.labels
    assert {key: first.labels[key] for key in ("io.slipway.model", "io.slipway.version", "io.slipway.release-id")} == {
        "io.slipway.model": "test",
        "io.slipway.version": "1.0.1",
        "io.slipway.release-id": "r1",
    }
    assert client.images.get(first.tag).id == first.image_id
    layers = [client.images.get(image.tag).attrs["RootFS"]["Layers"] for image in (first, second)]
    deps = client.images.get(ensure_deps_image(client, LOCAL_BASE_IMAGE)).attrs["RootFS"]["Layers"]
    assert layers[0][: len(deps)] == deps  # base → dependencies → serving code → model
    assert len(layers[0]) == len(deps) + 2
    assert layers[0][:-1] == layers[1][:-1]
    assert layers[0][-1] != layers[1][-1]
    assert build("r1", seed=1).image_id == first.image_id  # the same release builds to the same image


def test_an_artifact_that_is_not_what_the_release_says_is_refused(client: docker.DockerClient, tmp_path: Path) -> None:
    model = linear_model(tmp_path / "model.onnx")
    spec = ReleaseImageSpec(
        release_id="r3", model_name="test", version="1", model_path=model, sha256="0" * 64, base_image=LOCAL_BASE_IMAGE
    )
    with pytest.raises(ImageBuildError, match=f"{model} has sha256 {file_sha256(model)}, but the release says 0+"):
        build_release_image(client, spec)


def test_container_runs_as_non_root_on_a_read_only_root_and_serves(
    client: docker.DockerClient, build: object, tmp_path: Path
) -> None:
    image = build("r4", seed=4)
    target = DockerTarget(client, memory="512m", cpus=1.0)
    instance = target.launch(InstanceSpec("r4", "staging", ports.allocate(), image=image.tag), timeout=60)
    try:
        container = client.containers.get(instance.handle)
        host = container.attrs["HostConfig"]
        assert (host["NetworkMode"], host["ReadonlyRootfs"], host["Memory"], host["NanoCpus"], host["CapDrop"]) == (
            "slipway-net-staging-r4-" + str(instance.port),
            True,
            512 * 1024 * 1024,
            10**9,
            ["ALL"],
        )
        assert container.exec_run("id -u").output == b"10001\n"
        assert b"Read-only file system" in container.exec_run("touch /app/x").output
        # Its own network: the host's loopback services (Redis here) are out of reach.
        probe = "import socket; socket.create_connection(('127.0.0.1', 6379), timeout=2)"
        assert b"ConnectionRefusedError" in container.exec_run(["python3", "-c", probe]).output
        answer = requests.post(instance.url + oip.infer_path("test"), json=LINEAR_BODY, timeout=5)
        assert oip.response_outputs(answer.json())["scores"].tolist() == [[5.5, 5.5, 7.0]]
        assert (answer.headers["X-Release-Id"], answer.headers["X-Model-Version"]) == ("r4", "1.0.4")
        assert answer.headers["X-Model-Sha256"] == image.labels["io.slipway.sha256"]

        config = proxy.ProxyConfig(state_dir=tmp_path / "haproxy", environments={"staging": ports.allocate()})
        proxy.ensure_running(config)
        try:
            proxy.set_traffic(config, "staging", "test", {instance: 100})
            zeros = oip.request_document({"x": np.zeros((1, 4), dtype=np.float32)})
            via_proxy = requests.post(config.endpoint("staging") + oip.infer_path("test"), json=zeros, timeout=5)
            assert via_proxy.headers["X-Release-Id"] == "r4"
            assert oip.response_outputs(via_proxy.json())["scores"].tolist() == [[0.5, -0.5, 0.0]]
        finally:
            proxy.stop(config)
    finally:
        target.stop(instance, timeout=10)
    with pytest.raises(NotFound):
        client.containers.get(instance.handle)
    with pytest.raises(NotFound):
        client.networks.get("slipway-net-staging-r4-" + str(instance.port))


def test_a_model_that_does_not_load_fails_the_health_check(
    client: docker.DockerClient, build: object, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    image = build("r5", model=broken)
    target = DockerTarget(client)
    spec = InstanceSpec("r5", "staging", ports.allocate(), image=image.tag)
    with pytest.raises(
        HealthCheckFailed,
        match=r"failed its health check: the model failed to load: ONNX Runtime "
        r"cannot load /model/model\.onnx",
    ):
        target.launch(spec, timeout=60)
    assert client.containers.list(all=True, filters={"label": "io.slipway.instance-release-id=r5"}) == []


def test_a_target_lists_as_started_the_containers_of_its_owner_only(client: docker.DockerClient, build: object,
                                                                     settings) -> None:
    """What the reaper of servers no record references reads: never a container another owner started."""
    image = build("r7", seed=7)
    ours, theirs = DockerTarget(client, owner="test-ours"), DockerTarget(client, owner="test-theirs")
    before = int(time.time())
    mine = ours.start(InstanceSpec("r7", "staging", ports.allocate(), image=image.tag))
    other = theirs.start(InstanceSpec("r7", "production", ports.allocate(), image=image.tag))
    try:
        started = ours.started()
        assert [s.instance for s in started] == [mine]
        assert before <= started[0].at <= time.time()
        assert [s.instance for s in theirs.started()] == [other]
        assert DockerTarget(client).started() == []  # no owner: it takes no container for its own
    finally:
        ours.stop(mine, timeout=5)
        theirs.stop(other, timeout=5)
    assert ours.started() == theirs.started() == []
    # An installation's targets carry its owner, derived from its secret key: another installation's differs.
    owner = routing.target_for(Environment(name="staging", target="docker")).owner
    assert owner == routing.instance_owner() and len(owner) == 16
    settings.SECRET_KEY = "another installation's secret key"
    assert routing.instance_owner() != owner


def test_a_language_model_image_boots_and_streams_a_completion_to_the_openai_client(
    client: docker.DockerClient, build: object, small_llm_bundle: Path
) -> None:
    image = build("r6", model=small_llm_bundle)
    target = DockerTarget(client, memory="1g", cpus=1.0)
    instance = target.launch(InstanceSpec("r6", "staging", ports.allocate(), image=image.tag), timeout=120)
    try:
        peer = openai.OpenAI(base_url=instance.url + "/v2/models/test/v1", api_key="not-checked", max_retries=0)
        whole = peer.completions.with_raw_response.create(model="test", prompt="The", max_tokens=4, temperature=0)
        assert (whole.headers["X-Release-Id"], whole.headers["X-Model-Version"]) == ("r6", "1.0.0")
        completion = whole.parse()
        assert (completion.usage.completion_tokens, completion.choices[0].finish_reason) == (4, "length")
        streamed = list(peer.completions.create(model="test", prompt="The", max_tokens=4, temperature=0, stream=True))
        assert "".join(chunk.choices[0].text for chunk in streamed) == completion.choices[0].text
    finally:
        target.stop(instance, timeout=10)
