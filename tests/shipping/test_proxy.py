import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from shipping import proxy
from shipping.proxy import ProxyConfig, ProxyError, ProxyUnavailable, ServerState
from shipping.targets import Instance
from tests.serving.test_clients import infer_with_clients
from tests.shipping.conftest import ports
from tests.shipping.load import LINEAR_BODY, LINEAR_INFER, SteadyLoad


def releases_seen(config: ProxyConfig, environment: str, count: int) -> list[str]:
    with requests.Session() as session:
        return [
            session.post(
                config.endpoint(environment) + LINEAR_INFER, json=LINEAR_BODY, timeout=5
            ).headers["X-Release-Id"]
            for _ in range(count)
        ]


def test_slots_start_in_maintenance_and_the_endpoint_answers_503(haproxy: ProxyConfig) -> None:
    states = proxy.servers(haproxy, "staging")
    assert [(s.slot, s.port, s.weight, s.maintenance) for s in states] == [
        (f"slot{n}", 1, 0, True) for n in range(1, 5)
    ]
    assert requests.get(haproxy.endpoint("staging") + "/healthz", timeout=5).status_code == 503


def test_switch_under_load_fails_no_request_and_moves_every_request(
    haproxy: ProxyConfig, launch: Callable[..., Instance]
) -> None:
    a, b = launch("A"), launch("B")
    proxy.set_traffic(haproxy, "staging", {a: 100})
    with SteadyLoad(haproxy.endpoint("staging") + LINEAR_INFER, rate=100, clients=4) as load:
        time.sleep(1.0)
        switch = time.perf_counter()
        after = proxy.set_traffic(haproxy, "staging", {b: 100})
        switched = time.perf_counter()
        time.sleep(1.0)
    assert [(s.port, s.weight, s.serving) for s in after if not s.maintenance] == [
        (a.port, 0, False),
        (b.port, 100, True),
    ]
    assert len(load.outcomes) >= 150
    assert load.failures == []
    assert {o.release for o in load.outcomes if o.done < switch} == {"A"}
    assert {o.release for o in load.sent_after(switched)} == {"B"}


def test_canary_split_promote_and_rollback(haproxy: ProxyConfig, launch: Callable[..., Instance]) -> None:
    stable, canary = launch("1"), launch("2")
    proxy.set_traffic(haproxy, "production", {stable: 90, canary: 10})
    assert Counter(releases_seen(haproxy, "production", 100)) == {"1": 90, "2": 10}
    proxy.set_traffic(haproxy, "production", {canary: 100})
    assert set(releases_seen(haproxy, "production", 20)) == {"2"}
    proxy.set_traffic(haproxy, "production", {stable: 100})  # rollback: the old release stayed warm
    assert set(releases_seen(haproxy, "production", 20)) == {"1"}
    used = [s for s in proxy.servers(haproxy, "production") if not s.maintenance]
    assert [(s.port, s.weight) for s in used] == [(stable.port, 100), (canary.port, 0)]
    # Environments are separate backends: staging was never given anything.
    assert all(s.maintenance for s in proxy.servers(haproxy, "staging"))


def test_detach_frees_the_slot_and_a_dead_instance_gets_no_traffic(
    haproxy: ProxyConfig, launch: Callable[..., Instance], local_target: object
) -> None:
    a, b = launch("A"), launch("B")
    proxy.set_traffic(haproxy, "staging", {a: 100, b: 0})
    proxy.detach(haproxy, "staging", b)
    assert [(s.port, s.maintenance) for s in proxy.servers(haproxy, "staging")][:2] == [(a.port, False), (b.port, True)]
    local_target.stop(a, timeout=10)
    deadline = time.monotonic() + 15  # HAProxy's checks (every 2 s, 3 failures) mark it down
    while proxy.servers(haproxy, "staging")[0].operational != "down" and time.monotonic() < deadline:
        time.sleep(0.2)
    with pytest.raises(ProxyError, match=r"health checks say \['slot1 \(127.0.0.1:\d+, down\)'\] cannot take"):
        proxy.set_traffic(haproxy, "staging", {a: 100})


def test_bad_requests_to_the_proxy_are_refused(haproxy: ProxyConfig, launch: Callable[..., Instance]) -> None:
    with pytest.raises(ProxyError, match="unknown environment 'qa'; configured: \\['production', 'staging'\\]"):
        proxy.servers(haproxy, "qa")
    with pytest.raises(ProxyError, match="weights must be between 0 and 256, got 300"):
        proxy.set_traffic(haproxy, "staging", {"slot1": 300})
    with pytest.raises(ProxyError, match=r"be_staging has no slots \['slot9'\]"):
        proxy.set_traffic(haproxy, "staging", {"slot9": 1})
    instances = [launch(str(n)) for n in range(4)]
    proxy.set_traffic(haproxy, "staging", {instance: 0 for instance in instances})
    with pytest.raises(ProxyError, match="every slot of be_staging is in use; detach an old instance first"):
        proxy.set_traffic(haproxy, "staging", {launch("5"): 100})


def test_reload_keeps_traffic_and_a_stopped_proxy_is_unavailable(
    haproxy: ProxyConfig, launch: Callable[..., Instance]
) -> None:
    a = launch("A")
    proxy.set_traffic(haproxy, "staging", {a: 100})
    with SteadyLoad(haproxy.endpoint("staging") + LINEAR_INFER, rate=50, clients=2) as load:
        time.sleep(0.5)
        wider = ProxyConfig(
            state_dir=haproxy.state_dir, environments={**haproxy.environments, "qa": ports.allocate()}, slots=4
        )
        proxy.ensure_running(wider)  # a new environment: HAProxy reloads, taking the sockets over
        time.sleep(0.5)
    assert load.failures == []
    assert proxy.servers(wider, "staging")[0] == ServerState("slot1", "127.0.0.1", a.port, 100, "up", False)
    assert {o.release for o in load.outcomes} == {"A"}
    proxy.stop(wider)
    with pytest.raises(ProxyUnavailable, match="HAProxy is not running"):
        proxy.servers(wider, "staging")


def test_invalid_configuration_is_rejected_and_the_running_one_kept(haproxy: ProxyConfig) -> None:
    running = haproxy.config_path.read_text()
    broken = ProxyConfig(state_dir=haproxy.state_dir, environments={"staging": 70000})
    with pytest.raises(ProxyError, match="HAProxy rejects the configuration"):
        proxy.ensure_running(broken)
    assert haproxy.config_path.read_text() == running
    assert len(proxy.servers(haproxy, "staging")) == 4


def test_protocol_clients_get_onnx_runtimes_numbers_through_the_proxy(
    haproxy: ProxyConfig, launch: Callable[..., Instance], linear_path: Path
) -> None:
    proxy.set_traffic(haproxy, "staging", {launch("P"): 100})
    rows = np.array([[1, 2, 3, 4], [0.25, -1, 8, 0]], dtype=np.float32)
    infer_with_clients(haproxy.endpoint("staging"), "linear", linear_path, {"x": rows}, "scores")
