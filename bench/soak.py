"""Soak: the embedded default (`make demo`) under a compressed day of CI traffic, against a running demo.

A build of the demo model is posted every --every seconds (2 s) for --minutes (15); one in
--approve-every (5) is approved at its first gate, so it is packaged and deployed to staging, and
one in --reject-every (10) is rejected (builds 1, 11, 21, ...); every --rollback-every builds (40) on-call rolls staging
back. The rest stop at their gate, as most builds of a busy day do.

Printed at the end, with the load average: worker (and other children) crashes and restarts from
the demo's supervisor (`demo-status.json`), releases stuck (not at rest --grace seconds after the
last post) and lost (posted, but unknown to the server), dispatch latency (a stage's queued to
started, p50/p95), the RSS of the web and worker process groups at start and end and its growth per
minute in the first and the second half of the run, and calls whose connection failed.
Goal: 0 crashes, 0 stuck, 0 lost, memory flat.

    make demo &        # or: .venv/bin/python manage.py demo --port 8000
    .venv/bin/python bench/soak.py --url http://127.0.0.1:8000 --data-dir var [--minutes 15]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from releases.management.demo_model import digits_eval_npz, digits_model

AT_REST = {"awaiting_approval", "released", "failed", "rejected", "rolled_back", "cancelled"}
MODEL = "soak-digits"


def token(data_dir: Path, user: str, *scopes: str) -> str:
    env = os.environ | {"SLIPWAY_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "manage.py", "createtoken", user, "--name", "soak"]
    for scope in scopes:
        argv += ["--scope", scope]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()


def children(data_dir: Path) -> dict:
    return json.loads((data_dir / "demo-status.json").read_text())["children"]


def group_rss_mb(pgid: int | None, command: bytes = b"") -> float:
    """Resident memory of the processes in the group (gunicorn's or Celery's workers included) whose
    command line holds ``command``: the worker's figure leaves out the short-lived processes its stages
    run (a memory measurement, ~90 MB for a second), which made it jump between samples."""
    if pgid is None:
        return 0.0
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or command not in (stat.parent / "cmdline").read_bytes():  # pgrp
                continue
        except OSError:
            continue
        total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # rss, in pages
    return round(total / 1e6, 1)


def memory(data_dir: Path) -> dict[str, float]:
    status = children(data_dir)
    return {"web": group_rss_mb(status["web"]["pid"]), "worker": group_rss_mb(status["worker"]["pid"], b"celery")}


class Soak:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.ci = self._session((data_dir / "demo-ci-token").read_text().strip())
        self.alice = self._session(token(data_dir, "alice", "approve", "releases:read"))
        self.oncall = self._session(token(data_dir, "oncall", "rollback", "releases:read"))
        self.model = digits_model().onnx_bytes
        self.eval_data = digits_eval_npz()
        self.posted: dict[int, int] = {}  # release id -> build number
        self.failed_posts: list[str] = []
        self.transport_errors: list[str] = []  # other calls the connection failed (counted, never retried)
        self.decided: set[int] = set()
        self.decisions = {"approve": 0, "reject": 0}
        self.rollbacks = {"done": 0, "refused": 0}

    @staticmethod
    def _session(raw: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {raw}"
        return session

    def post(self, n: int, run: str) -> None:
        version = f"{run}.{n}"
        try:
            answer = self.ci.post(f"{self.url}/api/v1/builds/", headers={"Idempotency-Key": f"soak-{version}"},
                                  data={"model": MODEL, "version": version, "task": "classification",
                                        "git_commit": f"{n:07x}"},
                                  files={"artifact": ("digits.onnx", self.model),
                                         "eval_data": ("eval.npz", self.eval_data)}, timeout=60)
        except requests.RequestException as exc:
            self.failed_posts.append(f"build {n}: {exc}")
            return
        if answer.status_code >= 300:
            self.failed_posts.append(f"build {n}: HTTP {answer.status_code} {answer.text[:200]}")
            return
        self.posted[answer.json()["release"]["id"]] = n

    def call(self, session: requests.Session, method: str, path: str, **kwargs: object) -> requests.Response | None:
        """One API call; a connection that fails is counted in transport_errors (None), not retried."""
        try:
            return session.request(method, f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            self.transport_errors.append(f"{method} {path}: {exc}")
            return None

    def decide(self, approve_every: int, reject_every: int) -> None:
        """Approve or reject, once, the builds picked for it that wait at their first gate."""
        answer = self.call(self.ci, "GET", "/api/v1/releases/",
                           params={"model": MODEL, "status": "awaiting_approval", "limit": 500})
        for release in answer.json().get("results", []) if answer is not None and answer.ok else []:
            pk, n = release["id"], self.posted.get(release["id"])
            if n is None or pk in self.decided:
                continue
            verb = "approve" if n % approve_every == 0 else "reject" if n % reject_every == 1 else None
            if verb and self.call(self.alice, "POST", f"/api/v1/releases/{pk}/{verb}/",
                                  json={"comment": "soak"}) is not None:
                self.decided.add(pk)
                self.decisions[verb] += 1

    def rollback(self) -> None:
        answer = self.call(self.oncall, "POST", "/api/v1/environments/staging/rollback/",
                           json={"reason": "soak: on-call drill"})
        if answer is not None:
            self.rollbacks["done" if answer.ok else "refused"] += 1

    def releases(self) -> dict[int, dict | None]:
        """Each posted release as the server has it now (None: unknown to it)."""
        found = {}
        for pk in self.posted:
            answer = None
            for _ in range(3):  # a read may be retried: a dropped connection is not a lost release
                answer = self.call(self.ci, "GET", f"/api/v1/releases/{pk}/")
                if answer is not None:
                    break
            found[pk] = answer.json() if answer is not None and answer.ok else None
        return found


def dispatch_seconds(releases: list[dict]) -> list[float]:
    took = []
    for release in releases:
        for stage in release["stages"]:
            if stage["queued_at"] and stage["started_at"]:
                took.append((datetime.fromisoformat(stage["started_at"].replace("Z", "+00:00"))
                             - datetime.fromisoformat(stage["queued_at"].replace("Z", "+00:00"))).total_seconds())
    return took


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values or [0])[0]


def growth(samples: list[tuple[float, dict[str, float]]]) -> dict[str, list[float]]:
    """Per process group, the RSS slope (MB/min, least squares) over the first and the second half of the
    samples: a warm-up fills the first half; memory is flat when the second half's slope is near 0."""
    half = len(samples) // 2
    if half < 2:
        return {}
    slopes: dict[str, list[float]] = {}
    for name in samples[0][1]:
        for part in (samples[:half + 1], samples[half:]):
            minutes, mb = [t for t, _ in part], [rss[name] for _, rss in part]
            slopes.setdefault(name, []).append(round(statistics.linear_regression(minutes, mb).slope, 2))
    return slopes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SLIPWAY_DATA_DIR", ROOT / "var")))
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between builds")
    parser.add_argument("--approve-every", type=int, default=5)
    parser.add_argument("--reject-every", type=int, default=10)
    parser.add_argument("--rollback-every", type=int, default=40)
    parser.add_argument("--grace", type=float, default=180.0, help="seconds after the last post for stages to settle")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    soak = Soak(args.url, data_dir)
    before, rss_before, load_before = children(data_dir), memory(data_dir), os.getloadavg()[0]
    run, started, n = time.strftime("%H%M%S"), time.monotonic(), 0
    samples: list[tuple[float, dict[str, float]]] = [(0.0, rss_before)]  # (minutes in, RSS per group)
    print(f"soak for {args.minutes:g} min: a build every {args.every:g} s against {args.url} "
          f"(load average {load_before:.2f}); RSS at start (MB): {rss_before}", flush=True)
    try:
        while time.monotonic() - started < args.minutes * 60:
            n += 1
            soak.post(n, run)
            soak.decide(args.approve_every, args.reject_every)
            if n % args.rollback_every == 0:
                soak.rollback()
            if n % 30 == 0:
                samples.append(((time.monotonic() - started) / 60, memory(data_dir)))
                print(f"{time.strftime('%H:%M:%S')} {n} builds posted, load average {os.getloadavg()[0]:.2f}, "
                      f"RSS (MB) {samples[-1][1]}", flush=True)
            time.sleep(max(0.0, started + n * args.every - time.monotonic()))
        settle = time.monotonic() + args.grace
        while time.monotonic() < settle:
            soak.decide(args.approve_every, args.reject_every)
            found = soak.releases()
            if all(r is not None and r["status"] in AT_REST for r in found.values()):
                break
            time.sleep(5)
    except KeyboardInterrupt:
        print("stopped early; figures so far", file=sys.stderr)
    found = soak.releases()
    after, rss_after = children(data_dir), memory(data_dir)
    known = [r for r in found.values() if r is not None]
    stuck = [f"#{r['id']} {r['status']}" for r in known if r["status"] not in AT_REST]
    lost = len(soak.failed_posts) + sum(r is None for r in found.values())
    waits = dispatch_seconds(known)
    crashes = {name: after[name]["crashes"] - before[name]["crashes"] for name in after}
    restarts = {name: after[name]["starts"] - before[name]["starts"] for name in after}
    statuses: dict[str, int] = {}
    for release in known:
        statuses[release["status"]] = statuses.get(release["status"], 0) + 1
    figures = {
        "builds_posted": n, "minutes": round((time.monotonic() - started) / 60, 1), "statuses": statuses,
        "crashes": crashes, "restarts": restarts, "stuck": len(stuck), "lost": lost,
        "dispatch_p50_s": round(percentile(waits, 50), 3), "dispatch_p95_s": round(percentile(waits, 95), 3),
        "stages_dispatched": len(waits), "rollbacks": soak.rollbacks, "decisions": soak.decisions,
        "rss_mb_start": rss_before,
        "rss_mb_end": rss_after, "rss_mb_per_min": growth(samples), "transport_errors": len(soak.transport_errors),
        "load_average_start": round(load_before, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    print(f"builds posted: {n} in {figures['minutes']} min; at the end: {statuses}")
    print(f"crashes: {crashes}  restarts: {restarts}")
    print(f"stuck: {len(stuck)} {stuck[:10]}  lost: {lost} {soak.failed_posts[:5]}")
    print(f"dispatch latency (queued -> started) over {len(waits)} stages: p50 {figures['dispatch_p50_s']} s, "
          f"p95 {figures['dispatch_p95_s']} s")
    print(f"decisions at the first gate: {soak.decisions}; rollbacks of staging: {soak.rollbacks}")
    print(f"calls whose connection failed (not retried): {len(soak.transport_errors)} {soak.transport_errors[:3]}")
    print(f"RSS (MB) start {rss_before} -> end {rss_after}; growth (MB/min, first half / second half of the run) "
          f"{figures['rss_mb_per_min']}; load average {figures['load_average_start']} -> "
          f"{figures['load_average_end']} ({os.cpu_count()} cores)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
