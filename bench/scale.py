"""A simulated busy day: 1,000 builds from 20 concurrent CI clients, 8 worker processes, 50 rollbacks.

What runs, all on this machine and started here (stopped by their ids at the end):
* PostgreSQL: a throwaway database `slipway_bench_scale` on 127.0.0.1:5432 (BENCH_DATABASE_URL for
  another), dropped and created afresh, dropped at the end.
* Redis: a redis-server of its own on a free port (nothing on disk), so its counters are the day's.
* web: gunicorn, --web sync processes (default 4: two per core, as gunicorn advises).
* workers: one `celery worker` with the prefork pool and --workers processes (default 8) on the cpu
  and gpu queues. Eight processes on two cores: a stage spends much of its time waiting on
  PostgreSQL and Redis round trips, so four per core keep the cores busy; each ONNX Runtime
  session uses one intra-op thread, so the processes do not fight with spinning threads.
  The deploy queue is not consumed: the day's builds stop at their approval gate.
* serving: HAProxy and two local model servers in production, for the rollbacks.

Arrival model: --clients CI clients (20) post builds at --rate builds per minute in all (240, a fifth
above the 200 target), evenly spaced: build n is due n * 60 / rate seconds into the day, client
n % clients posts it. Each build is a few-hundred-kB ONNX MLP on scikit-learn's digits (different
bytes every time) with its evaluation data. Like `slipway push --wait awaiting_approval`, a client
then polls GET /api/v1/releases/<id>/ every second until the release waits at its gate (or fails),
and posts its next build when due, or at once if that moment has passed. So when the pipeline keeps
up, the queue wait is measured at the offered rate; when it cannot, the clients fall behind, at
most --clients builds are in flight, and the builds per minute show what it can carry. --rate 0
makes it a closed loop: each client posts as soon as its previous build is at its gate.
Meanwhile an on-call engineer rolls production back through the API --rollbacks times, evenly over
the day (between two, the bench deploys the other release again).

The model's policy: accuracy at least 0.9, one approval (so every build stops at its gate), and the
--candidates to compress (int8-dynamic). First each client posts one build of a "warm-up" model
(imports, connections); those are not counted. Then it prints builds per minute through the gate,
queue wait p50/p95 (each stage's queued → started), database queries per build counted in the
server processes (the POST and every stage task; first and last 100 builds, to show they do not
grow), PostgreSQL and Redis rates, CPU per build and peak RSS per process kind, and as its last
line the same figures as one JSON object.

    .venv/bin/python bench/scale.py [--builds 1000] [--rate 240] [--clients 20] [--workers 8] [--web 4]
                                    [--rollbacks 50] [--candidates int8-dynamic]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale_services import BackendCpu, Services, backends_of, peak_rss_mb
from bench.throwaway import clean_up, configure, database_name, drop_database, recreate_database, serving_pids
from shipping.ports import ephemeral_port

REDIS_PORT = ephemeral_port()
PROBES = Path(tempfile.mkdtemp(prefix="slipway-bench-scale-probes-"))
SCRATCH = configure("slipway_bench_scale", REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
                    SLIPWAY_ALLOWED_HOSTS="127.0.0.1", BENCH_SCALE_PROBE_DIR=str(PROBES))

import django
import numpy as np
import onnx
import redis
import requests
from onnx import TensorProto, helper, numpy_helper

from bench import scale_figures as figures

MODEL = "digits-mlp"
GATE = {"awaiting_approval"}
ENDED = {"failed", "cancelled", "rejected"}
POLL_SECONDS = 1.0  # what `slipway wait` does
TARGETS = {"builds_per_minute_to_gate": 200, "queue_wait_p95_s": 1.0}


def mlp_build() -> tuple[onnx.ModelProto, bytes]:
    """A 64-256-256-10 MLP trained on digits (about 340 kB as ONNX) and its held-out evaluation data."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from releases.management.demo_model import npz_bytes

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    clf = MLPClassifier((256, 256), max_iter=40, random_state=0).fit(x[:1400], y[:1400])
    nodes, weights, current = [], [], "pixels"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        weights += [numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
                    numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [current, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
        current = f"z{i}"
        if i < len(clf.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"h{i}"]))
            current = f"h{i}"
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    graph = helper.make_graph(nodes, "digits_mlp",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
                              weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, npz_bytes(inputs=x[1400:], labels=y[1400:])


@dataclass
class Build:
    number: int
    posted: float = 0.0
    post_seconds: float = 0.0
    status_code: int = 0
    release_id: int | None = None
    status: str = ""
    seen_at_gate: float | None = None
    polls: int = 0


@dataclass
class Day:
    """The shared state of the clients and the on-call engineer. With a rate, build n is due at
    ``n * 60 / rate`` seconds into the day; a client still waiting for its previous gate posts late."""

    total: int
    rate: float  # builds per minute offered; 0: each client posts as soon as its previous build is at its gate
    started: float = field(default_factory=time.time)
    builds: list[Build] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)

    def due(self, number: int) -> float:
        return self.started + (number * 60 / self.rate if self.rate else 0.0)

    def add(self, build: Build) -> None:
        with self.lock:
            self.builds.append(build)

    def posted(self) -> int:
        with self.lock:
            return len(self.builds)


class CiClient(threading.Thread):
    """Posts builds index, index + clients, ... each when due, and polls each one's release every second
    until it waits at its gate (or fails)."""

    def __init__(self, index: int, clients: int, base: str, token: str, model: onnx.ModelProto, eval_npz: bytes,
                 day: Day, model_name: str = MODEL) -> None:
        super().__init__(name=f"ci-{index}", daemon=True)
        self.index, self.clients, self.base, self.day = index, clients, base, day
        self.eval_npz, self.model_name = eval_npz, model_name
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def run(self) -> None:
        for number in range(self.index, self.day.total, self.clients):
            time.sleep(max(0.0, self.day.due(number) - time.time()))
            build = Build(number)
            self.day.add(build)
            try:
                self.post(build)
                if build.release_id is not None:
                    self.wait(build)
            except requests.RequestException as exc:
                self.day.errors.append(f"build {build.number}: {exc}")

    def post(self, build: Build) -> None:
        self.model.doc_string = f"build {build.number} from CI client {self.index}"  # new bytes every build
        fields = {"model": self.model_name, "version": f"1.0.{build.number}", "task": "classification",
                  "git_commit": f"{build.number:040x}", "ci_run_url": f"https://ci.example.com/runs/{build.number}"}
        files = {"artifact": ("model.onnx", self.model.SerializeToString()), "eval_data": ("eval.npz", self.eval_npz)}
        build.posted = time.time()
        answer = self.session.post(f"{self.base}/api/v1/builds/", data=fields, files=files, timeout=120,
                                   headers={"Idempotency-Key": f"{self.model_name}-{build.number}"})
        build.post_seconds, build.status_code = time.time() - build.posted, answer.status_code
        if answer.status_code == 201:
            build.release_id = answer.json()["release"]["id"]
        else:
            self.day.errors.append(f"build {build.number}: HTTP {answer.status_code} {answer.text[:200]}")

    def wait(self, build: Build) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            build.polls += 1
            build.status = self.session.get(f"{self.base}/api/v1/releases/{build.release_id}/", timeout=60).json()[
                "status"]
            if build.status in GATE | ENDED:
                build.seen_at_gate = time.time()
                return
        self.day.errors.append(f"build {build.number}: release {build.release_id} still {build.status} after 600 s")


class Serving:
    """Production with two releases of a serving model, A and B, behind HAProxy, for the rollbacks."""

    def __init__(self, folder: Path, user) -> None:
        from django.conf import settings

        from releases.models import Artifact, Environment, Model, ModelVersion, Release, ReleasePolicy
        from shipping import proxy
        from shipping.local_target import LocalTarget
        from shipping.ports import PortAllocator
        from shipping.targets import InstanceSpec
        from tests.serving.onnx_models import linear_model

        ports = PortAllocator()
        environments = {"staging": ports.allocate(), "production": ports.allocate()}
        for name, port in environments.items():
            Environment.objects.filter(name=name).update(proxy_port=port, target="local")
        self.config = proxy.ProxyConfig(state_dir=settings.SLIPWAY_PROXY_DIR, environments=environments)
        proxy.ensure_running(self.config)
        model = Model.objects.create(name="serving", task="regression")
        ReleasePolicy.objects.create(model=model)
        artifact = Artifact.objects.create(sha256="0" * 64, size_bytes=0, kind="original", file_format="onnx")
        self.releases = [Release.objects.create(status="released", version=ModelVersion.objects.create(
            model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=user))
            for label in ("A", "B")]
        self.target = LocalTarget(log_dir=folder / "serving", pid_dir=serving_pids())
        path = linear_model(folder / "serving.onnx")
        self.instances = [self.target.launch(InstanceSpec(str(r.pk), "production", ports.allocate(),
                                                          model_name="serving", version=r.version.label,
                                                          model_path=path))
                          for r in self.releases]
        self.deploy(0)
        self.deploy(1)

    def deploy(self, index: int) -> None:
        """What the deploy stage does once an instance is healthy: all production traffic to it."""
        from releases import deploys
        from releases.actors import Actor

        deploys.put_in_service(self.releases[index].pk, "production", self.instances[index], canary_percent=None,
                               actor=Actor.system("bench"))

    def stop(self) -> None:
        from django.db import connection

        from shipping import proxy

        for instance in self.instances:
            self.target.stop(instance, timeout=10)
        proxy.stop(self.config)
        connection.close()


class OnCall(threading.Thread):
    """Rolls production back through the API `count` times, evenly over the day's builds."""

    def __init__(self, base: str, token: str, serving: Serving, day: Day, count: int) -> None:
        super().__init__(name="on-call", daemon=True)
        self.base, self.serving, self.day, self.count = base, serving, day, count
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.seconds: list[float] = []
        self.failed: list[str] = []

    def run(self) -> None:
        try:
            for n in range(1, self.count + 1):
                while self.day.posted() < n * self.day.total / (self.count + 1):
                    time.sleep(0.05)
                self.rollback()
                self.serving.deploy(1)  # B again, so that the next rollback has somewhere to go
        finally:
            from django.db import connection

            connection.close()

    def rollback(self) -> None:
        body = {"reason": "bench: p95 doubled", "expected_release": self.serving.releases[1].pk}
        started = time.perf_counter()
        answer = self.session.post(f"{self.base}/api/v1/environments/production/rollback/", json=body, timeout=60)
        self.seconds.append(time.perf_counter() - started)
        if answer.status_code != 200:
            self.failed.append(f"HTTP {answer.status_code}: {answer.text[:200]}")


def setup_records(candidates: list[str]) -> tuple[object, str, str]:
    """The CI user and token, the on-call token, and the model with its release policy."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from releases.models import ApiToken, Model, ReleasePolicy

    call_command("migrate", verbosity=0)
    ci = User.objects.create_user("bench-ci")
    ci.groups.add(Group.objects.get(name="deployer"))
    oncall = User.objects.create_user("bench-oncall")
    oncall.groups.add(Group.objects.get(name="on-call"))
    for name in (MODEL, "warm-up"):
        model = Model.objects.create(name=name, task="classification")
        ReleasePolicy.objects.create(model=model, min_accuracy=0.9, candidates=candidates)
    ci_token = ApiToken.issue(ci, "bench-ci", ["builds:write", "releases:read"])[1]
    oncall_token = ApiToken.issue(oncall, "bench-oncall", ["rollback", "releases:read"])[1]
    return ci, ci_token, oncall_token


def run_clients(base: str, token: str, model: onnx.ModelProto, eval_npz: bytes, count: int, day: Day,
                model_name: str = MODEL) -> None:
    clients = [CiClient(i, count, base, token, model, eval_npz, day, model_name) for i in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()


def day_processes(services: Services) -> dict[str, list[int]]:
    """The processes whose CPU time is counted (PostgreSQL's backends are sampled apart: BackendCpu)."""
    return services.pids() | {"ci_clients": [os.getpid()]}


def run_day(args: argparse.Namespace) -> dict:
    services = Services(SCRATCH)
    serving = None
    try:
        ci, ci_token, oncall_token = setup_records(args.candidates)
        serving = Serving(SCRATCH, ci)
        services.redis(REDIS_PORT)
        web_port = ephemeral_port()
        services.web(web_port, args.web)
        services.worker(args.workers)
        base = f"http://127.0.0.1:{web_port}"
        model, eval_npz = mlp_build()
        print(f"model: {len(model.SerializeToString()) / 1000:.0f} kB ONNX; warming up with {args.clients} builds",
              file=sys.stderr)
        warm = Day(total=args.clients, rate=0)
        run_clients(base, ci_token, model, eval_npz, args.clients, warm, model_name="warm-up")
        from django.db import connection

        broker = redis.Redis(port=REDIS_PORT)
        pg_before, redis_before = figures.postgres_snapshot(), figures.redis_snapshot(broker)
        cpu_before = figures.cpu_snapshot(day_processes(services) | {"postgres": backends_of(database_name())})
        backend_cpu = BackendCpu(database_name())
        backend_cpu.start()
        load_before = os.getloadavg()
        day = Day(total=args.builds, rate=args.rate)
        oncall = OnCall(base, oncall_token, serving, day, args.rollbacks)
        started = day.started
        oncall.start()
        run_clients(base, ci_token, model, eval_npz, args.clients, day)
        oncall.join()
        seconds = time.time() - started
        load_after = os.getloadavg()
        pg_after, redis_after = figures.postgres_snapshot(), figures.redis_snapshot(broker)
        cpu_after = figures.cpu_snapshot(day_processes(services)) | {"postgres": backend_cpu.stop()}
        release_ids = [b.release_id for b in day.builds if b.release_id is not None]
        result = {"builds": args.builds, "clients": args.clients, "offered_per_minute": args.rate,
                  "worker_processes": args.workers, "web_processes": args.web, "candidates": args.candidates}
        result |= figures.pipeline_figures(release_ids, started)
        time.sleep(0.5)  # the last probe lines are written after each response and task
        result |= figures.queries_per_build(figures.probe_rows(PROBES), release_ids)
        result |= figures.postgres_figures(pg_before, pg_after, seconds, len(release_ids))
        result |= figures.redis_figures(redis_before, redis_after, seconds, len(release_ids))
        result |= figures.cpu_figures(cpu_before, cpu_after, len(release_ids))
        result |= {"rollbacks": len(oncall.seconds), "rollbacks_failed": len(oncall.failed),
                   "rollback_api_ms_p50": figures.percentile([s * 1000 for s in oncall.seconds], 50),
                   "rollback_api_ms_max": round(max(oncall.seconds) * 1000, 1) if oncall.seconds else None,
                   "client_errors": len(day.errors) + len(warm.errors),
                   "load_average_before": [round(v, 2) for v in load_before],
                   "load_average_after": [round(v, 2) for v in load_after]}
        for line in (day.errors + warm.errors + oncall.failed)[:10]:
            print(f"error: {line}", file=sys.stderr)
        connection.close()
    finally:
        if serving is not None:
            serving.stop()
        services.stop()
    return result | figures.memory_figures(services.peaks, peak_rss_mb(os.getpid()))


def report(result: dict) -> None:
    q = result
    offered = f"{q['offered_per_minute']:g}/min offered" if q["offered_per_minute"] else "closed loop"
    print(f"{q['builds']} builds from {q['clients']} CI clients ({offered}), {q['worker_processes']} worker "
          f"processes, {q['web_processes']} web processes, candidates {', '.join(q['candidates']) or 'none'}; "
          f"load average {q['load_average_before'][0]} before, {q['load_average_after'][0]} after")
    print(f"through the gate: {q['builds_at_gate']} builds in {q['day_seconds']} s = "
          f"{q['builds_per_minute_to_gate']} builds/min (target >= {TARGETS['builds_per_minute_to_gate']}); "
          f"releases: {q['release_statuses']}")
    print(f"queue wait (queued -> started): p50 {q['queue_wait_p50_s']} s, p95 {q['queue_wait_p95_s']} s "
          f"(target < {TARGETS['queue_wait_p95_s']} s), max {q['queue_wait_max_s']} s")
    print(f"stage time p50 (ms): {q['stage_ms_p50']}")
    print(f"database queries per build (POST + stages): first 100 {q['queries_per_build_first_100']}, "
          f"last 100 {q['queries_per_build_last_100']}, max {q['queries_per_build_max']}; "
          f"by step {q['queries_by_step']}; per poll {q['queries_per_poll']} ({q['polls']} polls)")
    print(f"POST p50: first 100 {q['post_ms_p50_first_100']} ms, last 100 {q['post_ms_p50_last_100']} ms")
    print(f"PostgreSQL: {q['pg_commits_per_s']} commits/s, {q['pg_rows_written_per_s']} rows written/s "
          f"({q['pg_rows_written_per_build']} per build), {q['pg_bytes_per_build']} bytes per build")
    print(f"Redis: {q['redis_commands_per_s']} commands/s ({q['redis_commands_per_build']} per build), "
          f"peak memory {q['redis_peak_memory_mb']} MB")
    print(f"rollbacks: {q['rollbacks']} ({q['rollbacks_failed']} failed), API p50 {q['rollback_api_ms_p50']} ms, "
          f"max {q['rollback_api_ms_max']} ms; client errors {q['client_errors']}")
    print(f"CPU per build (ms): {q['cpu_ms_per_build']}, {q['cpu_ms_per_build_total']} in all: "
          f"{q['cpu_bound_builds_per_minute']} builds/min would fill this machine's {os.cpu_count()} cores")
    print(f"peak RSS (MB): {q['peak_rss_mb']}")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20, help="concurrent CI clients")
    parser.add_argument("--rate", type=float, default=240,
                        help="builds per minute the clients offer, evenly spaced (0: each client posts again as "
                             "soon as its previous build is at its gate)")
    parser.add_argument("--candidates", default="int8-dynamic",
                        help="the model's release policy's compression candidates, comma-separated ('' for none)")
    parser.add_argument("--workers", type=int, default=8, help="Celery worker processes (prefork)")
    parser.add_argument("--web", type=int, default=4, help="gunicorn processes")
    parser.add_argument("--rollbacks", type=int, help="rollbacks during the day (default: one per 20 builds)")
    args = parser.parse_args()
    args.candidates = [kind for kind in args.candidates.split(",") if kind]
    if args.rollbacks is None:
        args.rollbacks = max(1, args.builds // 20)
    recreate_database()
    django.setup()
    try:
        result = run_day(args)
    except BaseException:
        print(f"the services' logs are in {SCRATCH}", file=sys.stderr)
        raise
    finally:
        clean_up()
        drop_database()
    for folder in (SCRATCH, PROBES):  # the day's artifacts: ~0.5 MB a build
        shutil.rmtree(folder, ignore_errors=True)
    report(result)


if __name__ == "__main__":
    main()
