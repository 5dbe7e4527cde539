"""HAProxy routes each model by its path to its own backend; every change goes through the runtime API."""

import json
import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from serving import oip
from shipping import proxy
from shipping.proxy import ProxyConfig, ProxyError, ProxyUnavailable, ServerState
from shipping.targets import Instance
from tests.shipping.conftest import ports
from tests.shipping.load import LINEAR_BODY, SteadyLoad

MODEL = "linear"  # the model name the launch fixture's servers answer to


def predict_url(config: ProxyConfig, environment: str, model: str = MODEL) -> str:
    return config.endpoint(environment) + oip.infer_path(model)


def releases_seen(config: ProxyConfig, environment: str, count: int, model: str = MODEL) -> list[str]:
    with requests.Session() as session:
        return [
            session.post(predict_url(config, environment, model), json=LINEAR_BODY, timeout=5).headers["X-Release-Id"]
            for _ in range(count)
        ]


def haproxy_pid(config: ProxyConfig) -> int:
    return int(config.pid_path.read_text().split()[0])


def test_no_model_is_routed_at_first_and_every_request_gets_a_clear_404(haproxy: ProxyConfig) -> None:
    assert proxy.routes(haproxy, "staging") == {}
    assert proxy.servers(haproxy, "staging", MODEL) == []
    unknown = requests.post(predict_url(haproxy, "staging", "nope"), json={}, timeout=5)
    assert (unknown.status_code, unknown.headers["Content-Type"]) == (404, "application/json")
    assert unknown.json() == {"error": "no model nope serves in staging"}
    quoted = requests.get(haproxy.endpoint("staging") + '/v2/models/a"b/ready', timeout=5)
    assert json.loads(quoted.text) == {"error": 'no model a%22b serves in staging'}  # the path arrives escaped
    bare = requests.get(haproxy.endpoint("staging") + "/v2/health/ready", timeout=5)
    assert (bare.status_code, bare.json()) == (404, {"error": "ask a model by its path: /v2/models/<model>/..."})


def test_switch_under_load_fails_no_request_and_moves_every_request(
    haproxy: ProxyConfig, launch: Callable[..., Instance]
) -> None:
    a, b = launch("A"), launch("B")
    proxy.set_traffic(haproxy, "staging", MODEL, {a: 100})
    with SteadyLoad(predict_url(haproxy, "staging"), rate=100, clients=4) as load:
        time.sleep(1.0)
        switch = time.perf_counter()
        after = proxy.set_traffic(haproxy, "staging", MODEL, {b: 100})
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


def test_two_models_side_by_side_adding_moving_and_removing_one_never_touches_the_other(
    haproxy: ProxyConfig, launch: Callable[..., Instance]
) -> None:
    """Under load on model `linear`, model `other` gets a backend, a canary, a rollback and is removed:
    HAProxy is never reloaded (same pid) and no request of `linear` fails or changes release."""
    stable = launch("L1")
    proxy.set_traffic(haproxy, "production", MODEL, {stable: 100})
    pid = haproxy_pid(haproxy)
    with SteadyLoad(predict_url(haproxy, "production"), rate=60, clients=3) as load:
        time.sleep(0.5)
        o1, o2 = launch("O1", model_name="other"), launch("O2", model_name="other")
        proxy.set_traffic(haproxy, "production", "other", {o1: 100})
        assert set(releases_seen(haproxy, "production", 10, "other")) == {"O1"}
        proxy.set_traffic(haproxy, "production", "other", {o1: 50, o2: 50})
        assert Counter(releases_seen(haproxy, "production", 20, "other")) == {"O1": 10, "O2": 10}
        proxy.set_traffic(haproxy, "production", "other", {o1: 100})
        proxy.remove_route(haproxy, "production", "other")
        gone = requests.post(predict_url(haproxy, "production", "other"), json={}, timeout=5)
        time.sleep(0.5)
    assert (gone.status_code, gone.json()) == (404, {"error": "no model other serves in production"})
    assert haproxy_pid(haproxy) == pid
    assert len(load.outcomes) >= 40
    assert load.failures == []
    assert {o.release for o in load.outcomes} == {"L1"}
    assert proxy.routes(haproxy, "production") == {MODEL: "be_production_1"}
    assert haproxy.map_path("production").read_text() == f"{MODEL} be_production_1\n"


def test_canary_split_promote_and_rollback(haproxy: ProxyConfig, launch: Callable[..., Instance]) -> None:
    stable, canary = launch("1"), launch("2")
    proxy.set_traffic(haproxy, "production", MODEL, {stable: 90, canary: 10})
    assert Counter(releases_seen(haproxy, "production", 100)) == {"1": 90, "2": 10}
    proxy.set_traffic(haproxy, "production", MODEL, {canary: 100})
    assert set(releases_seen(haproxy, "production", 20)) == {"2"}
    proxy.set_traffic(haproxy, "production", MODEL, {stable: 100})  # rollback: the old release stayed warm
    assert set(releases_seen(haproxy, "production", 20)) == {"1"}
    used = [s for s in proxy.servers(haproxy, "production", MODEL) if not s.maintenance]
    assert [(s.port, s.weight) for s in used] == [(stable.port, 100), (canary.port, 0)]
    # Environments are separate: staging routes nothing.
    assert proxy.routes(haproxy, "staging") == {}


def test_detach_frees_the_slot_and_a_dead_instance_gets_no_traffic(
    haproxy: ProxyConfig, launch: Callable[..., Instance], local_target: object
) -> None:
    a, b = launch("A"), launch("B")
    proxy.set_traffic(haproxy, "staging", MODEL, {a: 100, b: 0})
    proxy.detach(haproxy, "staging", MODEL, b)
    states = proxy.servers(haproxy, "staging", MODEL)
    assert [(s.port, s.maintenance) for s in states][:2] == [(a.port, False), (b.port, True)]
    local_target.stop(a, timeout=10)
    deadline = time.monotonic() + 15  # HAProxy's checks (every 2 s, 3 failures) mark it down
    while proxy.servers(haproxy, "staging", MODEL)[0].operational != "down" and time.monotonic() < deadline:
        time.sleep(0.2)
    with pytest.raises(ProxyError, match=r"health checks say \['slot1 \(127.0.0.1:\d+, down\)'\] cannot take"):
        proxy.set_traffic(haproxy, "staging", MODEL, {a: 100})


def test_bad_requests_to_the_proxy_are_refused(haproxy: ProxyConfig, launch: Callable[..., Instance]) -> None:
    with pytest.raises(ProxyError, match="unknown environment 'qa'; configured: \\['production', 'staging'\\]"):
        proxy.servers(haproxy, "qa", MODEL)
    with pytest.raises(ProxyError, match="weights must be between 0 and 256, got 300"):
        proxy.set_traffic(haproxy, "staging", MODEL, {"slot1": 300})
    with pytest.raises(ProxyError, match="'a b' cannot be routed"):
        proxy.set_traffic(haproxy, "staging", "a b", {})
    with pytest.raises(ProxyError, match=r"be_staging_1 has no slots \['slot9'\]"):
        proxy.set_traffic(haproxy, "staging", MODEL, {"slot9": 1})
    proxy.remove_route(haproxy, "staging", MODEL)  # the refused call above gave the model no route
    instances = [launch(str(n)) for n in range(4)]
    proxy.set_traffic(haproxy, "staging", MODEL, {instance: 0 for instance in instances})
    with pytest.raises(ProxyError, match="every slot of be_staging_1 is in use; detach an old instance first"):
        proxy.set_traffic(haproxy, "staging", MODEL, {launch("5"): 100})
    small = ProxyConfig(state_dir=haproxy.state_dir, environments=haproxy.environments, slots=4, backends=1)
    with pytest.raises(ProxyError, match="all 1 model backends of staging are in use"):
        proxy.set_traffic(small, "staging", "second", {})


def test_reload_keeps_routes_and_traffic_and_a_stopped_proxy_is_unavailable(
    haproxy: ProxyConfig, launch: Callable[..., Instance]
) -> None:
    a = launch("A")
    proxy.set_traffic(haproxy, "staging", MODEL, {a: 100})
    with SteadyLoad(predict_url(haproxy, "staging"), rate=50, clients=2) as load:
        time.sleep(0.5)
        wider = ProxyConfig(
            state_dir=haproxy.state_dir, environments={**haproxy.environments, "qa": ports.allocate()}, slots=4
        )
        proxy.ensure_running(wider)  # a new environment: HAProxy reloads, taking the sockets over
        time.sleep(0.5)
    assert load.failures == []
    assert proxy.routes(wider, "staging") == {MODEL: "be_staging_1"}
    assert proxy.servers(wider, "staging", MODEL)[0] == ServerState("slot1", "127.0.0.1", a.port, 100, "up", False)
    assert {o.release for o in load.outcomes} == {"A"}
    proxy.stop(wider)
    with pytest.raises(ProxyUnavailable, match="HAProxy is not running"):
        proxy.routes(wider, "staging")


def test_invalid_configuration_is_rejected_and_the_running_one_kept(haproxy: ProxyConfig) -> None:
    running = haproxy.config_path.read_text()
    broken = ProxyConfig(state_dir=haproxy.state_dir, environments={"staging": 70000})
    with pytest.raises(ProxyError, match="HAProxy rejects the configuration"):
        proxy.ensure_running(broken)
    assert haproxy.config_path.read_text() == running
    assert proxy.routes(haproxy, "staging") == {}
