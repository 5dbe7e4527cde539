"""Stopping what was started outside the process tree: every registered model server, and HAProxy."""

from collections.abc import Callable
from pathlib import Path

import pytest

from shipping import local_target as local_module
from shipping import proxy
from shipping.cleanup import stop_serving
from shipping.local_target import LocalTarget, registered
from shipping.ports import PortAllocator, port_is_free
from shipping.targets import Instance


def test_stop_serving_stops_every_registered_server_and_haproxy(
    launch: Callable[..., Instance], local_target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = launch("31"), launch("32", environment="production")
    gone = launch("33")
    local_target.stop(gone, timeout=10)  # stopped through the target: no longer registered
    assert sorted(i.release_id for i in registered(local_target.pid_dir)) == ["31", "32"]
    ports = PortAllocator()
    config = proxy.ProxyConfig(state_dir=tmp_path / "proxy", environments={"staging": ports.allocate()})
    proxy.ensure_running(config)
    monkeypatch.setattr(local_module, "_children", {})  # as seen from the demo, which did not start them

    stopped = stop_serving(config.state_dir, local_target.pid_dir)

    assert len(stopped) == 3 and stopped[-1].startswith("HAProxy pid ")
    assert [s.split(" (")[0] for s in stopped[:2]] == [f"model server pid {i.handle}"
                                                        for i in sorted([first, second], key=lambda i: i.handle)]
    assert not local_target.is_alive(first) and not local_target.is_alive(second)
    assert all(port_is_free(port) for port in (first.port, second.port, config.environments["staging"]))
    assert registered(local_target.pid_dir) == []
    assert stop_serving(config.state_dir, local_target.pid_dir) == []  # nothing left: nothing to do
