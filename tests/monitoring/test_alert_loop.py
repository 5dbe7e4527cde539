"""The alert loop, live: a real Prometheus finds the model servers through Slipway's service discovery,
scrapes them and evaluates deploy/prometheus/alerts.yml (test timings: half-second scrapes, 5 s rate
windows, 1 s `for:`); a real Alertmanager posts what fires to Slipway's receiver, which rolls the bad
release back through the real HAProxy — once; a second fault within the cool-down only notifies.

It takes ~30-60 s: each pass waits on the loop itself (scrape, rule evaluation, grouping); bench/mttr.py
measures those steps."""

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from monitoring.models import AlertAction, MonitoringPolicy
from releases import deploys, routing
from releases.actors import Actor
from releases.models import ApiToken, Deployment
from serving import oip
from shipping import proxy
from shipping.local_target import LocalTarget
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec
from tests.conftest import build_form, make_user, token_client
from tests.factories import digits_model
from tests.monitoring import alertloop
from tests.shipping.load import SteadyLoad

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]
ERRORS = "SlipwayModelErrorRate"
ports = PortAllocator()


def wait_for(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
    return found


@pytest.fixture
def production(users, tmp_path: Path) -> Iterator[dict]:
    """Two digits releases served in production by real model servers behind HAProxy: the first kept
    warm, the second active. The second fails inside ONNX Runtime on pixels out of range."""
    ci = token_client(users["ci"])
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    good.write_bytes(digits_model().onnx_bytes)
    bad.write_bytes(alertloop.faulty_digits_onnx())
    ids = [ci.post("/api/v1/builds/", build_form(version=v), format="multipart").json()["release"]["id"]
           for v in ("1.0.0", "1.0.1")]
    config = routing.proxy_config()
    proxy.ensure_running(config)
    target = LocalTarget(log_dir=tmp_path / "logs", pid_dir=tmp_path / "pids")
    instances: list[Instance] = []
    try:
        for release_id, path in zip(ids, (good, bad), strict=True):
            spec = InstanceSpec(release_id=str(release_id), environment="production", port=ports.allocate(),
                                model_name="digits", version=str(release_id), model_path=path)
            instances.append(target.launch(spec, timeout=30))
            deploys.put_in_service(release_id, "production", instances[-1], canary_percent=None,
                                   actor=Actor.system("test"))
        yield {"ids": ids, "instances": instances, "endpoint": config.endpoint("production")}
    finally:
        for instance in instances:
            target.stop(instance, timeout=10)
        proxy.stop(config)


@pytest.fixture
def loop(production, live_server, tmp_path: Path) -> Iterator[dict]:
    if alertloop.PROMETHEUS is None or alertloop.ALERTMANAGER is None:
        pytest.skip("Prometheus and Alertmanager are not installed: bash deploy/install-system-deps.sh test")
    pager = make_user("pager", "on-call")
    _, token = ApiToken.issue(pager, "alertmanager", ["alerts", "rollback"])
    timings = alertloop.Timings.test()
    alertmanager = alertloop.start_alertmanager(tmp_path, live_server.url, token, timings)
    try:
        prometheus = alertloop.start_prometheus(tmp_path, live_server.url, alertmanager, timings)
    except BaseException:
        alertmanager.stop()
        raise
    try:
        yield {"prometheus": prometheus, "alertmanager": alertmanager}
    finally:
        prometheus.stop()
        alertmanager.stop()


def active_release() -> int:
    return Deployment.objects.get(service__environment__name="production", role="active").release_id


def test_a_failing_production_release_is_rolled_back_by_the_live_alert_loop_once(production, loop):
    good_id, bad_id = production["ids"]
    prometheus = loop["prometheus"]
    MonitoringPolicy.objects.create(model=Deployment.objects.get(release_id=bad_id).release.version.model,
                                    on_alert="rollback", cooldown_seconds=600)
    rows = digits_model().eval_inputs[:8]
    healthy = oip.request_document({"pixels": rows.astype(np.float32)})
    faulty = oip.request_document({"pixels": (rows * 3).astype(np.float32)})  # pixels out of range
    infer = production["endpoint"] + oip.infer_path("digits")
    with SteadyLoad(infer, rate=20, clients=2, body=healthy) as load:
        # Prometheus has found both servers and scrapes them: the rule sees requests, no errors.
        wait_for("Prometheus scrapes the active release's answers",
                 lambda: alertloop.scraped_requests(prometheus, bad_id) > 0)
        assert alertloop.scraped_errors(prometheus, bad_id) == 0
        assert alertloop.active(prometheus, ERRORS) == []

        fault = time.perf_counter()
        load.body = faulty
        action = wait_for("the alert rolls production back",
                          lambda: AlertAction.objects.filter(action="rolled_back").first(), timeout=90)
        assert active_release() == good_id
        assert (action.alertname, action.release_id) == (ERRORS, bad_id)
        # The old release answers the same inputs: the errors stop, every request after the move is its.
        moved = time.perf_counter()
        wait_for("requests after the rollback are answered", lambda: [
            o for o in load.outcomes if o.sent > moved])
    after = [o for o in load.outcomes if o.sent > moved]
    assert {(o.release, o.status) for o in after} == {(str(good_id), 200)}
    failed = Counter((o.release, o.status) for o in load.outcomes if fault < o.sent < moved)
    assert failed[(str(bad_id), 422)] > 0, failed  # the fault: ONNX Runtime fails on the bad release
    assert [o for o in load.outcomes if o.status is None] == []  # no request dropped by the move

    # The bad release is put back by a person; it fails again within the cool-down: notified only.
    wait_for("the first alert resolves", lambda: alertloop.active(prometheus, ERRORS) == [], timeout=60)
    bad = production["instances"][1]
    deploys.put_in_service(bad_id, "production", bad, canary_percent=None, actor=Actor.system("test"))
    with SteadyLoad(infer, rate=20, clients=2, body=faulty):
        second = wait_for("the repeated alert reaches the receiver", lambda: AlertAction.objects.exclude(
            action="rolled_back").filter(alertname=ERRORS).first(), timeout=90)
    assert second.action == "notified" and "cool-down" in second.detail, second.detail
    assert active_release() == bad_id
    assert AlertAction.objects.filter(action="rolled_back").count() == 1
