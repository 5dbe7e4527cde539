import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving.integrity import file_sha256
from shipping import proxy
from shipping.local_target import LocalTarget
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec
from tests.serving import conftest as serving_fixtures

ports = PortAllocator()
linear_path = serving_fixtures.linear_path  # the same model fixture as the serving tests


@pytest.fixture
def local_target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(log_dir=tmp_path / "logs")


@pytest.fixture
def launch(local_target: LocalTarget, linear_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start local instances of the linear model (stopped after the test)."""
    started: list[Instance] = []

    def start(release_id: str, environment: str = "staging", **overrides: object) -> Instance:
        spec = {
            "release_id": release_id,
            "environment": environment,
            "port": ports.allocate(),
            "model_name": "linear",
            "version": f"v{release_id}",
            "model_path": linear_path,
            "sha256": file_sha256(linear_path),
        }
        instance = local_target.launch(InstanceSpec(**(spec | overrides)), timeout=30)
        started.append(instance)
        return instance

    yield start
    with ThreadPoolExecutor() as pool:  # each stop waits for gunicorn's graceful exit (~2 s)
        list(pool.map(lambda instance: local_target.stop(instance, timeout=10), started))


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[proxy.ProxyConfig]:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed: apt-get install -y haproxy")
    config = proxy.ProxyConfig(
        state_dir=tmp_path / "haproxy",
        environments={"staging": ports.allocate(), "production": ports.allocate()},
        slots=4,
        backends=4,
    )
    proxy.ensure_running(config)
    yield config
    proxy.stop(config)
