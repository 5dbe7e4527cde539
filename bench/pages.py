"""Server time and query count of each dashboard page at 10,000 versions and 100,000 metric points.

The data goes into a throwaway PostgreSQL database, `slipway_bench_pages` on 127.0.0.1 (set
BENCH_DATABASE_URL for another one), dropped and created afresh at the start and dropped at the
end. Sessions are kept in Redis as in production (BENCH_REDIS_URL, by default
redis://127.0.0.1:6379/7, a database the tests leave alone); the bench's sessions are deleted at the
end, and nothing else is touched. Rows are written with bulk_create: 10,000 versions over 20 models (8,000 in one),
one release each with 3 stages and 10 release-level metrics (100,000 points), a release at its gate
with 6 candidates, 30,000 audit events, 5,000 traffic changes and 50,000 serving samples in production.

Each page is asked for through django.test.Client (the whole Django stack, no network): query
counts once with 100 versions and again with 10,000, to show that they do not grow, then server
time over --requests requests after a warm-up (wall time, and the web process's CPU time, which
other load on the machine disturbs less). It prints a table; its last line is the same figures
as one JSON object.

    .venv/bin/python bench/pages.py [--requests 50] [--keep]
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import configure, database_name, drop_database, recreate_database

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.test import Client

configure("slipway_bench_pages", REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))

TOTAL_VERSIONS = 10_000
FIRST_VERSIONS = 100  # the query counts are taken here first, then at TOTAL_VERSIONS
MODELS = 20
METRICS = [
    "accuracy",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "throughput_per_s",
    "size_bytes",
    "peak_memory_bytes",
    "parity_max_abs_diff",
    "top1_agreement",
    "latency_mean_ms",
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_P95_MS = 30.0  # every page's p95 server time
TARGET_CPU_MS = 15.0  # and the median CPU time of the web process per request


class Population:
    """Writes the rows, in two steps, always in the same order, with ids known in advance."""

    def __init__(self) -> None:
        from django.contrib.auth.models import Group, User

        from releases.models import Model, ReleasePolicy

        def user(name: str, group: str) -> User:
            person = User.objects.create(username=name)
            person.groups.add(Group.objects.get(name=group))
            return person

        self.ci, self.alice, self.olga = user("ci", "deployer"), user("alice", "approver"), user("olga", "on-call")
        self.models = Model.objects.bulk_create(
            Model(name="big" if i == 0 else f"model-{i:02}", task="classification") for i in range(MODELS)
        )
        ReleasePolicy.objects.bulk_create(ReleasePolicy(model=m, min_accuracy=0.5) for m in self.models)
        self.made = 0
        self.gate_release = None

    def model_of(self, n: int):
        """Version n's model: four in five go to 'big' (8,000 of 10,000), the rest spread over the others."""
        return self.models[0] if n % 5 != 4 else self.models[1 + n % (MODELS - 1)]

    def add_versions(self, upto: int) -> None:
        from releases.models import Artifact, AuditEvent, Metric, ModelVersion, Release, StageRun

        numbers = range(self.made, upto)
        originals = Artifact.objects.bulk_create(
            Artifact(sha256=f"{n:064x}", size_bytes=1_000_000 + n, kind="original", file_format="onnx") for n in numbers
        )
        evals = Artifact.objects.bulk_create(
            Artifact(sha256=f"{n + 10**9:064x}", size_bytes=5000, kind="eval-data", file_format="npz") for n in numbers
        )
        versions = ModelVersion.objects.bulk_create(
            ModelVersion(
                model=self.model_of(n),
                label=f"1.{n}",
                git_commit="0123456789abcdef",
                artifact=original,
                eval_data=eval_data,
                author=self.ci,
            )
            for n, original, eval_data in zip(numbers, originals, evals, strict=True)
        )
        ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(created_at=T0)
        releases = Release.objects.bulk_create(
            Release(
                version=v,
                status="failed" if n % 20 == 0 else "released",
                failure_reason="evaluate: accuracy 0.41 fails >= 0.5" if n % 20 == 0 else "",
            )
            for n, v in zip(numbers, versions, strict=True)
        )
        StageRun.objects.bulk_create(
            StageRun(release=r, name=name, position=i, status="succeeded", worker_host="bench", device="cpu")
            for r in releases
            for i, name in enumerate(("validate", "evaluate", "gate"))
        )
        Metric.objects.bulk_create(
            (
                Metric(release=r, name=name, value=0.9 + (n % 7) / 100 if name == "accuracy" else 1.0 + i, unit="")
                for n, r in zip(numbers, releases, strict=True)
                for i, name in enumerate(METRICS)
            ),
            batch_size=5000,
        )
        AuditEvent.objects.bulk_create(
            (
                AuditEvent(actor_label="bench", action=action, release=r, subject=str(r.pk))
                for r in releases
                for action in ("build.received", "release.start", "release.release")
            ),
            batch_size=5000,
        )
        self.made = upto
        if self.gate_release is None:
            self.gate_release = self.add_gate_release()
            self.add_production(releases[-2], releases[-1])

    def add_gate_release(self):
        from releases.models import Artifact, AuditEvent, Metric, ModelVersion, Release, StageRun

        original = Artifact.objects.create(sha256="a" * 64, size_bytes=90_000_000, kind="original", file_format="onnx")
        eval_data = Artifact.objects.create(sha256="b" * 64, size_bytes=5000, kind="eval-data", file_format="npz")
        version = ModelVersion.objects.create(
            model=self.models[0],
            label="gate",
            git_commit="0123456789abcdef",
            artifact=original,
            eval_data=eval_data,
            author=self.ci,
        )
        release = Release.objects.create(version=version, status="awaiting_approval")
        StageRun.objects.bulk_create(
            StageRun(release=release, name=name, position=i, status=status, worker_host="bench", device="cpu")
            for i, (name, status) in enumerate(
                (("validate", "succeeded"), ("evaluate", "succeeded"), ("gate", "waiting"))
            )
        )
        kinds = ["onnx-fp32", "int8-dynamic", "int8-static", "int8-mixed", "fp16", "pruned"]
        candidates = Artifact.objects.bulk_create(
            Artifact(
                sha256=f"{i:x}" * 64,
                size_bytes=20_000_000 + i,
                kind=kind,
                file_format="onnx",
                parent=original,
                release=release,
                error="pruning needs torch weights" if kind == "pruned" else "",
            )
            for i, kind in enumerate(kinds)
        )
        Metric.objects.bulk_create(
            Metric(release=release, artifact=a, name=name, value=1.0 + i, unit="")
            for a in [original, *candidates[:-1]]
            for i, name in enumerate(METRICS)
        )
        release.chosen_artifact = candidates[1]
        release.choice_reasons = {str(a.pk): f"reason for {a.kind}" for a in candidates}
        release.save()
        AuditEvent.objects.bulk_create(
            AuditEvent(actor_label="bench", action="stage.start", release=release) for _ in range(500)
        )
        return release

    def add_production(self, previous, serving) -> None:
        from releases.models import Deployment, Environment, Service, ServingSample, TrafficChange

        production = Service.objects.create(environment=Environment.objects.get(name="production"),
                                            model=serving.version.model)
        Deployment.objects.bulk_create(
            [
                Deployment(service=production, release=previous, role="warm", traffic_percent=0),
                Deployment(service=production, release=serving, role="active", traffic_percent=100),
            ]
        )
        TrafficChange.objects.bulk_create(
            TrafficChange(
                service=production,
                at=T0 + timedelta(minutes=i),
                shares={str((serving if i % 2 else previous).pk): 100},
                action="rollback" if i % 10 == 9 else "deploy",
                actor=self.olga,
            )
            for i in range(5000)
        )
        ServingSample.objects.bulk_create(
            (
                ServingSample(
                    service=production,
                    release=serving if i % 2 else previous,
                    at=T0 + timedelta(seconds=10 * i),
                    requests_per_s=100.0,
                    error_rate=0.001,
                    latency_p95_ms=12.0,
                )
                for i in range(50_000)
            ),
            batch_size=5000,
        )


SESSIONS: list[str] = []  # the bench's sessions, deleted at the end


def signed_in(user: "User") -> "Client":
    """A test client logged in as `user`, its session remembered for forget_sessions()."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    SESSIONS.append(client.session.session_key)
    return client


def forget_sessions() -> None:
    from importlib import import_module

    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in SESSIONS:
        store(key).delete()


def pages(population: Population) -> dict[str, tuple[str, object]]:
    """Page name → (URL, user)."""
    release = population.gate_release.pk
    return {
        "home": ("/", population.alice),
        "models": ("/models/", population.alice),
        "model": ("/models/big/", population.alice),
        "model, page 200": ("/models/big/?page=200", population.alice),
        "release": (f"/releases/{release}/", population.alice),
        "release, audit page 10": (f"/releases/{release}/?audit=10", population.alice),
        "release live": (f"/releases/{release}/live/", population.alice),
        "environments": ("/environments/", population.olga),
        "environment": ("/environments/production/?at=2026-01-02T10:00&history=100", population.olga),
        "environment live": ("/environments/production/live/", population.olga),
        "health": ("/health/?days=90", population.alice),
        "workers": ("/workers/", population.alice),
        "webhooks": ("/webhooks/", population.alice),
    }


def query_counts(population: Population) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for name, (url, user) in pages(population).items():
        client = signed_in(user)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {response.status_code}")
        counts[name] = len(queries)
    return counts


def timings(population: Population, requests: int) -> dict[str, dict]:
    results = {}
    for name, (url, user) in pages(population).items():
        client = signed_in(user)
        for _ in range(3):
            client.get(url)
        times, cpu = [], []
        for _ in range(requests):
            start, start_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        times.sort()
        results[name] = {
            "url": url,
            "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1),
            "cpu_median_ms": round(statistics.median(cpu), 1),
            "bytes": len(response.content),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page (default 50)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--versions", type=int, default=TOTAL_VERSIONS,
                        help=f"versions in the end (default {TOTAL_VERSIONS:,}); the counts are compared with "
                             f"those at {FIRST_VERSIONS}")
    args = parser.parse_args()

    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from releases.models import Metric, ModelVersion

    try:
        call_command("migrate", verbosity=0)
        population = Population()
        population.add_versions(FIRST_VERSIONS)
        small = query_counts(population)
        started = time.perf_counter()
        population.add_versions(args.versions)
        fill_s = time.perf_counter() - started
        with connection.cursor() as cursor:
            # The visibility map and planner statistics, as autovacuum keeps them on a live database (it
            # vacuums a table after many inserts too: index-only scans count on it).
            cursor.execute("VACUUM ANALYZE")
        large = query_counts(population)
        results = timings(population, args.requests)
        versions, metrics = ModelVersion.objects.count(), Metric.objects.count()
    finally:
        if not args.keep:
            forget_sessions()
            drop_database()

    print(
        f"{versions:,} versions, {metrics:,} metric points (written in {fill_s:.1f} s); "
        f"{args.requests} requests per page through django.test.Client; PostgreSQL {database_name()}"
        f"; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'page':24} {'median ms':>9} {'p95 ms':>7} {'cpu ms':>6} {'queries@' + str(FIRST_VERSIONS):>11} "
        f"{'queries@' + str(args.versions):>14} {'KB':>6}  url"
    )
    for name, row in results.items():
        row.update(queries_small=small[name], queries=large[name])
        print(
            f"{name:24} {row['median_ms']:9.1f} {row['p95_ms']:7.1f} {row['cpu_median_ms']:6.1f} {small[name]:11} "
            f"{large[name]:14} {row['bytes'] / 1024:6.1f}  {row['url']}"
        )
    worst = max(row["p95_ms"] for row in results.values())
    worst_cpu = max(row["cpu_median_ms"] for row in results.values())
    growing = [name for name in results if small[name] != large[name]]
    print(
        f"worst p95 {worst:.1f} ms (target {TARGET_P95_MS:.0f} ms): {'met' if worst <= TARGET_P95_MS else 'MISSED'}; "
        f"worst CPU median {worst_cpu:.1f} ms (target {TARGET_CPU_MS:.0f} ms): "
        f"{'met' if worst_cpu <= TARGET_CPU_MS else 'MISSED'}; "
        f"query counts that grew with the data: {', '.join(growing) or 'none'}"
    )
    print(
        json.dumps(
            {
                "versions": versions,
                "metric_points": metrics,
                "requests_per_page": args.requests,
                "load_average": round(os.getloadavg()[0], 2),
                "target_p95_ms": TARGET_P95_MS,
                "worst_p95_ms": worst,
                "target_cpu_ms": TARGET_CPU_MS,
                "worst_cpu_median_ms": worst_cpu,
                "pages": results,
            }
        )
    )


if __name__ == "__main__":
    main()
