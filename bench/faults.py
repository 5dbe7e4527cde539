"""Fault drills, many times over: workers killed with SIGKILL in the middle of a stage (a pipeline stage,
or deploy_staging after approval), Redis stopped under a running pipeline while CI posts a build, and
every PostgreSQL connection cut (as a database restart does to its clients).

Real processes: a Redis server of the bench's own (stopped and started again), Celery worker processes
(prefork, killed whole with SIGKILL), the web as the whole Django stack in this process (CI's posts and
approvals through the REST API), the sweeper every 0.5 s, HAProxy and model servers as local processes,
all on a throwaway PostgreSQL database (bench/throwaway.py). Stage thresholds are seconds
(tests/reliability/processes.py DRILL_ENV). Drill kinds take turns. It prints, per drill, what happened,
then: drills run, releases lost (not at their gate in time, or failed), stages stuck (left queued or
running), double deploys (a release put in service twice in one environment) — each must be 0.
The last line is one JSON object with the figures.

    .venv/bin/python bench/faults.py [--drills 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import clean_up, configure, drop_database, recreate_database
from shipping.ports import port_is_free
from tests.reliability.processes import DRILL_ENV, RedisServer, Worker, worker_env


def free_port_pair() -> int:
    """A port whose next one is free too: the drill's staging and production endpoints."""
    for port in range(18300, 18900, 2):
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise RuntimeError("no two free ports in 18300-18900")


class Bench:
    def __init__(self, data_dir: Path, redis_server: RedisServer) -> None:
        from rest_framework.test import APIClient

        from tests.reliability.drills import Sweeper

        self.data_dir, self.redis = data_dir, redis_server
        self.worker_env = worker_env(os.environ["DATABASE_URL"], redis_server.url)
        self.workers = self.landed = 0
        self.worker = self.start_worker()
        self.sweeper = Sweeper()
        self.versions = 0
        self.outage_posts: list[float] = []  # seconds a build post took while Redis was down
        self.ci, self.alice = APIClient(), APIClient()
        self.ci.credentials(HTTP_AUTHORIZATION=f"Bearer {make_user('ci', 'deployer')}")
        self.alice.credentials(HTTP_AUTHORIZATION=f"Bearer {make_user('alice', 'approver')}")

    def start_worker(self) -> Worker:
        self.workers += 1
        name = f"faults-{self.workers}"
        return Worker(name, self.worker_env, self.data_dir / f"{name}.log")

    def kill_worker_in(self, release_id: int, stage: str, delay: float) -> None:
        """Kill the worker `delay` s after `stage` started, and start another; count whether the kill
        landed while the stage ran (a fast stage may be done by then)."""
        from releases.models import StageRun
        from tests.reliability.drills import wait_for_stage

        wait_for_stage(release_id, stage, "running")
        time.sleep(delay)
        self.worker.kill()
        self.landed += StageRun.objects.filter(release_id=release_id, name=stage, status="running").exists()
        self.worker = self.start_worker()

    def post_build(self) -> tuple[int, int | None]:
        from tests.conftest import build_form

        self.versions += 1
        response = self.ci.post("/api/v1/builds/", build_form(version=f"1.0.{self.versions}"), format="multipart")
        return response.status_code, response.json().get("release", {}).get("id")

    # Each drill returns the releases it made and the status each must reach.
    def kill_mid_stage(self, stage: str) -> list[int]:
        _, release_id = self.post_build()
        self.kill_worker_in(release_id, stage, delay=0)
        return [release_id]

    def kill_mid_deploy(self, delay: float) -> list[int]:
        """`delay` s into deploy_staging: the server starting, the smoke test, or the traffic moving."""
        from tests.reliability.drills import wait_for_all

        _, release_id = self.post_build()
        wait_for_all([release_id], {"awaiting_approval", "failed"}, timeout=180)
        self.alice.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json")
        self.kill_worker_in(release_id, "deploy_staging", delay)
        return [release_id]

    def redis_outage(self, stage: str) -> list[int]:
        from tests.reliability.drills import wait_for_stage

        _, first = self.post_build()
        wait_for_stage(first, stage, "running")
        self.redis.stop()
        clock = time.monotonic()
        code, second = self.post_build()
        self.outage_posts.append(time.monotonic() - clock)
        if code != 201:
            raise AssertionError(f"a build posted while Redis was down got {code}")
        time.sleep(2)
        self.redis.start()
        return [first, second]

    def database_cut(self, stage: str) -> list[int]:
        from django.db import close_old_connections

        from tests.reliability.drills import terminate_backends, wait_for_stage

        _, release_id = self.post_build()
        wait_for_stage(release_id, stage, "running")
        terminate_backends(os.environ["DATABASE_URL"])
        close_old_connections()
        return [release_id]


def make_user(name: str, group: str) -> str:
    from django.contrib.auth.models import Group, User

    from releases.models import ApiToken
    from tests.conftest import ALL_SCOPES

    user = User.objects.create_user(name)
    user.groups.add(Group.objects.get(name=group))
    return ApiToken.issue(user, "bench", ALL_SCOPES)[1]


def deployed_in_staging(release_id: int) -> bool:
    from releases.models import StageRun

    return StageRun.objects.filter(release_id=release_id, name="deploy_staging", status="succeeded").exists()


def run(drills: int, data_dir: Path, redis_server: RedisServer) -> dict:
    import django
    from django.core.management import call_command

    recreate_database()
    django.setup()
    call_command("migrate", verbosity=0)
    from tests.reliability.drills import figures, retries, wait_for_all

    redis_server.start()
    bench = Bench(data_dir, redis_server)
    stages = ["validate", "convert", "compress", "evaluate"]
    kinds = ["kill -9 mid-stage", "kill -9 mid-deploy", "redis outage", "database cut"]
    totals = {"drills_run": 0, "releases_lost": 0, "stages_stuck": 0, "double_deploys": 0}
    released: list[int] = []
    started = time.monotonic()
    try:
        with bench.sweeper:
            for i in range(drills):
                kind, stage = kinds[i % len(kinds)], stages[(i // len(kinds)) % len(stages)]
                clock = time.monotonic()
                if kind == "kill -9 mid-stage":
                    ids = bench.kill_mid_stage(stage)
                elif kind == "kill -9 mid-deploy":
                    ids, stage = bench.kill_mid_deploy(delay=0.15 * (i // len(kinds))), "deploy_staging"
                elif kind == "redis outage":
                    ids = bench.redis_outage(stage)
                else:
                    ids = bench.database_cut(stage)
                reached = wait_for_all(ids, {"awaiting_approval", "failed"}, timeout=240)
                if kind == "kill -9 mid-deploy":
                    reached = {pk: s if deployed_in_staging(pk) else "not deployed" for pk, s in reached.items()}
                found = figures(ids, reached, {"awaiting_approval"})
                totals["drills_run"] += 1
                for key, value in found.items():
                    totals[key] += value
                released += ids
                print(f"drill {i + 1:>3} {kind:<20} at {stage:<15} releases {ids}: {sorted(set(reached.values()))}"
                      f" lost {found['releases_lost']} stuck {found['stages_stuck']} "
                      f"double {found['double_deploys']} ({time.monotonic() - clock:.1f} s)", flush=True)
    finally:
        bench.worker.kill()
        if redis_server.proc.poll() is None:
            redis_server.stop()
        clean_up()
    totals |= {"kills_landed_mid_stage": bench.landed, "retries": retries(released),
               "post_while_redis_down_max_s": round(max(bench.outage_posts, default=0.0), 2),
               "seconds": round(time.monotonic() - started, 1), "load_average": round(os.getloadavg()[0], 2)}
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drills", type=int, default=20)
    args = parser.parse_args()
    data_dir = configure("slipway_bench_faults", SLIPWAY_FIRST_PROXY_PORT=str(free_port_pair()), **DRILL_ENV)
    # configure() leaves the broker to the filesystem: the drills need a Redis to stop.
    redis_server = RedisServer(data_dir)
    os.environ["REDIS_URL"] = redis_server.url
    try:
        totals = run(args.drills, data_dir, redis_server)
    finally:
        drop_database()
    print(f"drills run: {totals['drills_run']}  releases lost: {totals['releases_lost']}  "
          f"stages stuck: {totals['stages_stuck']}  double deploys: {totals['double_deploys']}  "
          f"(kills that landed mid-stage: {totals['kills_landed_mid_stage']}; stage runs lost and retried: "
          f"{totals['retries']}; a build posted while Redis was down answered within "
          f"{totals['post_while_redis_down_max_s']} s; {totals['seconds']} s; "
          f"load average {totals['load_average']})")
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
