"""Mean time to repair by alert: from a fault in a production release to the rollback being complete.

Two digits releases serve production behind HAProxy (the first warm, the second active), under a
steady load. The second one's model fails inside ONNX Runtime on pixels out of range; at the fault,
the load starts sending such pixels. A real Prometheus (Slipway's service discovery, the alert rules
of deploy/prometheus/alerts.yml) and a real Alertmanager post the alert to Slipway's receiver (a web
process on the bench's throwaway PostgreSQL database), which rolls production back. Each step:

  scrape          fault -> the first scraped sample with an error (Prometheus' sample timestamp)
  rule evaluation that sample -> the alert seen firing (`rate` window, `for:`, evaluation interval)
  alertmanager    firing -> the receiver records the alert (group_wait, Prometheus' send interval)
  receiver        the receiver's record -> the first request answered by the previous release (the
                  rollback: policy, cool-down, HAProxy's runtime API; the move itself takes ~10 ms,
                  see bench/rollback.py)
  recorded        -> the traffic change committed: the rollback complete in Slipway's records

with the shipped timings (deploy/prometheus/*.yml: 5 s scrapes and evaluations, a 20 s window held
30 s, 5 s group_wait for paging alerts; goal at most 60 s) and with the tests' timings. The last line
is one JSON object with the figures.

    .venv/bin/python bench/mttr.py [--timings test|shipped|both] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults import free_port_pair
from bench.throwaway import clean_up, configure, drop_database, recreate_database, serving_pids

SCRATCH = configure("slipway_bench_mttr", SLIPWAY_ALLOWED_HOSTS="testserver,127.0.0.1",
                    SLIPWAY_FIRST_PROXY_PORT=str(free_port_pair()))

import django
import numpy as np
import requests

from serving import oip
from shipping import proxy
from shipping.local_target import LocalTarget
from shipping.ports import PortAllocator
from shipping.targets import InstanceSpec
from tests.monitoring import alertloop
from tests.shipping.load import SteadyLoad

ALERT = "SlipwayModelErrorRate"
STEPS = ("scrape", "rule_evaluation", "alertmanager", "receiver", "recorded")


class Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def start_web() -> tuple[str, WSGIServer]:
    """Slipway's web (the whole Django stack) in threads of this process: the receiver's address."""
    from django.core.wsgi import get_wsgi_application

    port = alertloop.free_port()
    server = make_server("127.0.0.1", port, get_wsgi_application(), server_class=Threaded, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


def records() -> tuple[list[int], str]:
    """A digits model with a rollback policy, its two releases, and the pager's token (alerts, rollback)."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from monitoring.models import MonitoringPolicy
    from releases.models import ApiToken, Artifact, Model, ModelVersion, Release, ReleasePolicy

    call_command("migrate", verbosity=0)
    pager = User.objects.create_user("bench-pager")
    pager.groups.add(Group.objects.get(name="on-call"))
    token = ApiToken.issue(pager, "alertmanager", ["alerts", "rollback"])[1]
    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model)
    MonitoringPolicy.objects.create(model=model, on_alert="rollback", cooldown_seconds=3600)
    artifact = Artifact.objects.create(sha256="0" * 64, size_bytes=0, kind="original", file_format="onnx")
    ids = [Release.objects.create(status="released", version=ModelVersion.objects.create(
        model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=pager)).pk
        for label in ("1.0.0", "1.0.1")]
    return ids, token


def wall(moment: datetime) -> float:
    return moment.timestamp()


def first_error_sample(prometheus: alertloop.Daemon, release_id: int) -> float | None:
    """The scrape time (Prometheus' own timestamp) of the first sample counting an error, if any yet."""
    query = f'timestamp(slipway_model_errors_total{{release="{release_id}"}} > 0)'  # per series: its sample's time
    answer = requests.get(prometheus.url + "/api/v1/query", params={"query": query}, timeout=5).json()
    values = [float(series["value"][1]) for series in answer["data"]["result"]]
    return min(values) if values else None


def one_run(name: str, timings: alertloop.Timings, rate: float, folder: Path, web: str) -> dict:
    from releases import deploys, routing
    from releases.actors import Actor
    from releases.management.demo_model import digits_model
    from releases.models import AuditEvent, Deployment, TrafficChange

    work = folder / name
    work.mkdir()
    good_path, bad_path = work / "good.onnx", work / "bad.onnx"
    good_path.write_bytes(digits_model().onnx_bytes)
    bad_path.write_bytes(alertloop.faulty_digits_onnx())
    ids, token = records()
    config = routing.proxy_config()
    proxy.ensure_running(config)
    target = LocalTarget(log_dir=work / "logs", pid_dir=serving_pids())
    ports = PortAllocator()
    for release_id, path in zip(ids, (good_path, bad_path), strict=True):
        spec = InstanceSpec(release_id=str(release_id), environment="production", port=ports.allocate(),
                            model_name="digits", version=str(release_id), model_path=path)
        deploys.put_in_service(release_id, "production", target.launch(spec, timeout=60), canary_percent=None,
                               actor=Actor.system("bench"))
    alertmanager = alertloop.start_alertmanager(work, web, token, timings)
    prometheus = alertloop.start_prometheus(work, web, alertmanager, timings)
    rows = digits_model().eval_inputs[:8]
    offset = time.time() - time.perf_counter()  # SteadyLoad's clock to wall time
    try:
        with SteadyLoad(config.endpoint("production") + oip.infer_path("digits"), rate=rate, clients=2,
                        body=oip.request_document({"pixels": rows.astype(np.float32)})) as load:
            deadline = time.monotonic() + 10 * timings.discovery + 60
            while alertloop.scraped_requests(prometheus, ids[1]) == 0:
                if time.monotonic() > deadline:
                    targets = requests.get(prometheus.url + "/api/v1/targets", timeout=5).json()["data"]
                    found = requests.get(web + "/metrics/targets", timeout=5,
                                         headers={"Authorization": f"Bearer {alertloop.metrics_token()}"})
                    models = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets["activeTargets"]
                              if t["labels"]["job"] != "slipway"]
                    raise RuntimeError(f"Prometheus never scraped the active release; its model targets: {models}; "
                                       f"Slipway's discovery answered {found.status_code}: {found.text[:500]}")
                time.sleep(0.2)
            fault = time.time()
            load.body = {"inputs": (rows * 3).tolist()}
            scraped = firing = None
            limit = time.monotonic() + 30 * 60
            while not TrafficChange.objects.filter(action="rollback").exists():
                if time.monotonic() > limit:
                    raise RuntimeError("no rollback within 30 minutes")
                scraped = scraped or first_error_sample(prometheus, ids[1])
                if firing is None and alertloop.firing(prometheus, ALERT):
                    firing = time.time()
                time.sleep(0.1)
            moved_at = wall(TrafficChange.objects.get(action="rollback").at)
            received = wall(AuditEvent.objects.filter(action="alert.fired").order_by("at").first().at)
            deadline = time.monotonic() + 30
            while not (served := [o.done + offset for o in load.outcomes
                                  if o.release == str(ids[0]) and o.sent + offset > fault]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the previous release answered nothing after the rollback")
                time.sleep(0.05)
        active = Deployment.objects.get(service__environment__name="production", role="active").release_id
        assert active == ids[0], f"release {active} serves, not {ids[0]}"
    finally:
        prometheus.stop()
        alertmanager.stop()
        clean_up()
    scraped = scraped if scraped is not None else firing
    firing = firing if firing is not None else received
    marks = [fault, scraped, firing, received, min(served), max(moved_at, min(served))]
    steps = {step: round(marks[i + 1] - marks[i], 2) for i, step in enumerate(STEPS)}
    return {"timings": name, "fault_to_rollback_complete_s": round(marks[-1] - fault, 2), "steps_s": steps,
            "dominant_step": max(steps, key=lambda s: steps[s]),
            "configuration": timings.__dict__}


def run(which: list[str], rate: float) -> list[dict]:
    from django.db import connections

    results = []
    with tempfile.TemporaryDirectory(prefix="slipway-mttr-") as scratch:
        web, server = start_web()
        try:
            for name in which:  # each run on fresh records (and a fresh HAProxy, Prometheus, Alertmanager)
                connections.close_all()
                recreate_database()
                timings = alertloop.Timings.test() if name == "test" else alertloop.Timings.shipped()
                results.append(one_run(name, timings, rate, Path(scratch), web))
                print(render(results[-1]), flush=True)
        finally:
            server.shutdown()
    return results


def render(result: dict) -> str:
    steps = "  ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in result["steps_s"].items())
    return (f"{result['timings']} timings: fault -> rollback complete {result['fault_to_rollback_complete_s']:.2f} s "
            f"({steps}); dominant: {result['dominant_step'].replace('_', ' ')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", choices=["test", "shipped", "both"], default="both")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, in all")
    args = parser.parse_args()
    if alertloop.PROMETHEUS is None or alertloop.ALERTMANAGER is None:
        sys.exit("Prometheus and Alertmanager are needed: bash deploy/install-system-deps.sh test")
    recreate_database()
    django.setup()
    # No worker here: the rolled-back release's stop message has no broker to go to (logged, harmless).
    logging.getLogger("releases.deploys").setLevel(logging.CRITICAL)
    which = ["test", "shipped"] if args.timings == "both" else [args.timings]
    try:
        results = run(which, args.rate)
    finally:
        clean_up()
        drop_database()
    load = round(os.getloadavg()[0], 2)
    for result in results:
        print(render(result))
    print(f"goal: at most 60 s with the shipped timings; load average {load}")
    print(json.dumps({"runs": results, "goal_s": 60, "load_average": load}))


if __name__ == "__main__":
    main()
