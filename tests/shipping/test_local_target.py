import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from serving import oip
from serving.integrity import file_sha256
from shipping import local_target as local_module
from shipping.local_target import LocalTarget
from shipping.ports import NoFreePort, PortAllocator, port_is_free
from shipping.targets import HealthCheckFailed, Instance, InstanceSpec, TargetError
from tests.shipping.load import LINEAR_BODY, LINEAR_INFER


def test_launch_serves_the_release_then_stops(launch: Callable[..., Instance], local_target: LocalTarget) -> None:
    instance = launch("7")
    assert (instance.kind, instance.release_id, instance.url) == ("local", "7", f"http://127.0.0.1:{instance.port}")
    answer = requests.post(instance.url + LINEAR_INFER, json=LINEAR_BODY, timeout=5)
    assert oip.response_outputs(answer.json())["scores"].tolist() == [[5.5, 5.5, 7.0]]
    assert (answer.headers["X-Release-Id"], answer.headers["X-Model-Version"]) == ("7", "v7")
    assert local_target.is_alive(instance)
    local_target.stop(instance, timeout=10)
    assert not local_target.is_alive(instance)
    assert port_is_free(instance.port)
    assert "Shutting down: Master" in local_target.logs(instance)


def test_another_process_finds_the_instance_by_pid(
    launch: Callable[..., Instance], local_target: LocalTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = launch("8")
    monkeypatch.setattr(local_module, "_children", {})  # as seen from a process that did not start it
    assert local_target.is_alive(instance)
    assert not local_target.is_alive(Instance("local", instance.handle, "8", "staging", "127.0.0.1", 1))
    local_target.stop(instance, timeout=10)
    assert not local_target.is_alive(instance)


def test_wrong_sha256_fails_the_health_check_with_the_reason(
    launch: Callable[..., Instance], linear_path: Path
) -> None:
    with pytest.raises(HealthCheckFailed) as failure:
        launch("9", sha256="f" * 64)
    message = str(failure.value)
    assert message.startswith("release 9 (local ")
    assert (
        f"failed its health check: the model failed to load: model file {linear_path} has sha256 "
        f"{file_sha256(linear_path)}, expected {'f' * 64}"
    ) in message


def test_a_server_that_exits_fails_fast_with_its_log(local_target: LocalTarget, linear_path: Path) -> None:
    spec = InstanceSpec("10", "staging", port=0, model_path=linear_path)  # port 0: a usage error
    with pytest.raises(HealthCheckFailed) as failure:
        local_target.launch(spec, timeout=30)
    assert "failed its health check: the server exited" in str(failure.value)
    assert "--port must be between 1 and 65535, got 0" in str(failure.value)
    with pytest.raises(TargetError, match="a local instance needs a model_path"):
        local_target.start(InstanceSpec("10", "staging", 1))


def test_a_port_answering_as_another_release_is_refused(
    launch: Callable[..., Instance], local_target: LocalTarget
) -> None:
    first = launch("11")
    with pytest.raises(HealthCheckFailed, match=f"port {first.port} answers as release '11'"):
        launch("12", port=first.port)


def test_stop_kills_a_server_that_ignores_sigterm(launch: Callable[..., Instance], local_target: LocalTarget) -> None:
    instance = launch("13")
    os.kill(int(instance.handle), signal.SIGSTOP)  # a hung server: SIGTERM cannot be handled
    local_target.stop(instance, timeout=0.5)
    assert not local_target.is_alive(instance)


def test_port_allocator_skips_taken_and_recent_ports() -> None:
    allocator = PortAllocator(low=9950, high=9952)
    first = allocator.allocate()
    second = allocator.allocate()
    assert first != second
    third = allocator.allocate()
    assert sorted([first, second, third]) == [9950, 9951, 9952]
    with pytest.raises(NoFreePort, match=r"no free port in 9950-9952 on 127\.0\.0\.1"):
        allocator.allocate()
    assert PortAllocator(low=9953, high=9954).allocate(exclude=[9953]) == 9954
