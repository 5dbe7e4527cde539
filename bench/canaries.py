"""Twenty canaries at once on two worker processes: how late each verdict comes, and how busy the workers were.

Twenty models serve in production behind the real HAProxy, each with a stable release and a canary at 10 %
(put in service through releases.deploys, as the canary stage does, and opened for analysis with the same
window). The servers are small stand-ins in this process that answer /readyz and a /metrics whose request
counters grow steadily (the analysis reads nothing else). Two real Celery worker processes (-c 1 each,
queue deploy) and real beat (checks every SLIPWAY_CANARY_CHECK_EVERY_S) sample and judge them, on a
throwaway PostgreSQL database and a Redis of the bench's own. It prints, per canary, how late its verdict
came after its window ended (goal: p95 <= 5 s), the workers' CPU time over the run, and the load average.
The last line is one JSON object with the figures.

    .venv/bin/python bench/canaries.py [--canaries 20] [--window 30] [--check-every 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import clean_up, configure, drop_database, recreate_database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


REDIS_PORT = free_port()
CHECK_EVERY = os.environ.get("SLIPWAY_CANARY_CHECK_EVERY_S", "2")
DATA = configure("slipway_bench_canaries", REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0")

import django
import psutil

RATE = 20.0  # requests per second each stand-in reports


def stand_in(release_id: str) -> ThreadingHTTPServer:
    """A model server stand-in: ready as `release_id`, and /metrics with steadily growing counters."""
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                count = int((time.monotonic() - started) * RATE)
                body = (f'slipway_model_requests_total{{code="200"}} {count}\n'
                        f'slipway_model_request_duration_seconds_bucket{{le="0.005"}} {count}\n'
                        f'slipway_model_request_duration_seconds_bucket{{le="+Inf"}} {count}\n'
                        f"slipway_model_request_duration_seconds_count {count}\n").encode()
            else:
                body = b'{"status": "ready"}'
            self.send_response(200)
            self.send_header("X-Release-Id", release_id)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def records(count: int, window_minutes: float) -> list[int]:
    """`count` models, each with a stable release serving and a canary at 10 % opened for analysis."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from releases import canaries, deploys
    from releases.actors import Actor
    from releases.models import Artifact, Environment, Model, ModelVersion, Release, ReleasePolicy
    from shipping.targets import Instance

    call_command("migrate", verbosity=0)
    Environment.objects.filter(name="staging").update(proxy_port=free_port())
    # Not "local": beat's keep_serving would take the stand-ins for dead model servers and start real ones.
    Environment.objects.filter(name="production").update(proxy_port=free_port(), target="docker")
    from releases.routing import ensure_proxy

    ensure_proxy()
    user = User.objects.create_user("bench")
    artifact = Artifact.objects.create(sha256="0" * 64, size_bytes=0, kind="original", file_format="onnx")
    opened = []
    for n in range(count):
        model = Model.objects.create(name=f"model-{n:02d}", task="regression")
        ReleasePolicy.objects.create(model=model, canary_minutes=window_minutes, canary_min_requests=50)
        for role, label in (("stable", "A"), ("canary", "B")):
            release = Release.objects.create(status="released", version=ModelVersion.objects.create(
                model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=user))
            server = stand_in(str(release.pk))
            instance = Instance("docker", f"stand-in-{release.pk}", str(release.pk), "production", "127.0.0.1",
                                server.server_address[1])
            deployment = deploys.put_in_service(release.pk, "production", instance,
                                                canary_percent=10 if role == "canary" else None,
                                                actor=Actor.system("bench"))
        opened.append(canaries.open_canary(deployment, None).pk)
    return opened


def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def run(count: int, window_s: float, timeout: float) -> dict:
    from releases.models import Canary

    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    processes: list[subprocess.Popen] = []
    try:
        time.sleep(0.5)
        opened = records(count, window_s / 60)
        env = os.environ | {"SLIPWAY_CANARY_CHECK_EVERY_S": CHECK_EVERY}
        celery = [sys.executable, "-m", "celery", "-A", "slipway"]
        workers = [start([*celery, "worker", "-Q", "deploy", "-c", "1", "-n", f"bench{i}@%h", "--without-gossip",
                          "--without-mingle"], DATA / f"worker{i}.log", env) for i in (1, 2)]
        processes += workers
        processes.append(start([*celery, "beat", "-s", str(DATA / "beat-schedule")], DATA / "beat.log", env))
        began, cpu_before = time.monotonic(), None
        deadline = began + window_s + timeout
        watching = Canary.objects.filter(pk__in=opened, status=Canary.Status.WATCHING)
        while watching.exists() and time.monotonic() < deadline:
            if cpu_before is None:
                time.sleep(1)  # the workers have started: count their CPU from here
                cpu_before = sum(_cpu(p) for p in workers)
            time.sleep(0.5)
        wall = time.monotonic() - began
        cpu = sum(_cpu(p) for p in workers) - (cpu_before or 0)
        load = os.getloadavg()
        runs = list(Canary.objects.filter(pk__in=opened).order_by("pk"))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        redis.terminate()
    late = sorted((r.decided_at - r.ends_at).total_seconds() for r in runs if r.decided_at is not None)
    p95 = late[min(len(late) - 1, round(0.95 * (len(late) - 1)))] if late else None
    return {
        "canaries": count, "window_s": window_s, "check_every_s": float(CHECK_EVERY),
        "decided": len(late), "verdicts": sorted({r.status for r in runs}),
        "late_s_median": round(median(late), 2) if late else None, "late_s_p95": round(p95, 2) if late else None,
        "late_s_max": round(late[-1], 2) if late else None,
        "worker_cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
        "worker_busy_share": round(cpu / (2 * wall), 3), "load_average": [round(x, 2) for x in load],
    }


def _cpu(process: subprocess.Popen) -> float:
    """CPU seconds of a worker process and its children (the prefork pool)."""
    try:
        parent = psutil.Process(process.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canaries", type=int, default=20)
    parser.add_argument("--window", type=float, default=30.0, help="each canary's window, seconds")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait after the window")
    args = parser.parse_args()
    recreate_database()
    django.setup()
    try:
        figures = run(args.canaries, args.window, args.timeout)
    finally:
        clean_up()
        drop_database()
    print(f"{figures['decided']} of {figures['canaries']} canaries decided ({figures['verdicts']}), window "
          f"{figures['window_s']} s, checks every {figures['check_every_s']} s, 2 worker processes")
    print(f"verdict after the window ended: median {figures['late_s_median']} s, p95 {figures['late_s_p95']} s "
          f"(goal <= 5 s), max {figures['late_s_max']} s")
    print(f"workers busy: {figures['worker_cpu_s']} CPU s over {figures['wall_s']} s "
          f"({figures['worker_busy_share']:.1%} of 2 processes); load average {figures['load_average']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
