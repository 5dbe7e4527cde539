"""The figures of bench/scale.py's day, read back from the database, the probes and the services."""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

ROLLUP_EDGE = 100  # queries per build are shown for the first and the last this many builds


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def probe_rows(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line]
    return rows


def queries_per_build(rows: list[dict], release_ids: list[int]) -> dict:
    """Server-side queries of each build (its POST plus every stage task it ran), for the first and the
    last ROLLUP_EDGE builds by release id, and the polls' queries on their own."""
    per_release: dict[int, int] = defaultdict(int)
    stage_queries: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row["release"] in release_ids and row["kind"] in ("post", "stage"):
            per_release[row["release"]] += row["queries"]
            stage_queries[row.get("stage") or "post"].append(row["queries"])
    ordered = sorted(release_ids)
    first, last = ordered[:ROLLUP_EDGE], ordered[-ROLLUP_EDGE:]
    polls = [row["queries"] for row in rows if row["kind"] == "poll"]
    post_ms = {row["release"]: row["ms"] for row in rows if row["kind"] == "post" and row["release"] in release_ids}
    return {
        "queries_per_build_first_100": round(statistics.mean(per_release[r] for r in first), 2),
        "queries_per_build_last_100": round(statistics.mean(per_release[r] for r in last), 2),
        "queries_per_build_max": max(per_release[r] for r in ordered),
        "queries_by_step": {name: round(statistics.mean(counts), 2) for name, counts in stage_queries.items()},
        "queries_per_poll": round(statistics.mean(polls), 2) if polls else None,
        "polls": len(polls),
        "post_ms_p50_first_100": percentile([post_ms[r] for r in first if r in post_ms], 50),
        "post_ms_p50_last_100": percentile([post_ms[r] for r in last if r in post_ms], 50),
    }


def pipeline_figures(release_ids: list[int], day_started: float) -> dict:
    """Throughput to the gate, queue waits (queued → started) and stage times, from the records."""
    from releases.models import AuditEvent, StageRun

    arrivals = sorted(at.timestamp() for at in AuditEvent.objects.filter(
        release_id__in=release_ids, action="release.await_approval").values_list("at", flat=True))
    stages = list(StageRun.objects.filter(release_id__in=release_ids, started_at__isnull=False)
                  .values_list("name", "queued_at", "started_at", "finished_at"))
    waits = [(started - queued).total_seconds() for _, queued, started, _ in stages]
    took: dict[str, list[float]] = defaultdict(list)
    for name, _, started, finished in stages:
        if finished is not None:
            took[name].append((finished - started).total_seconds() * 1000)
    minutes = (arrivals[-1] - day_started) / 60 if arrivals else None
    return {
        "builds_at_gate": len(arrivals),
        "builds_per_minute_to_gate": round(len(arrivals) / minutes, 1) if minutes else 0.0,
        "day_seconds": round(minutes * 60, 1) if minutes else None,
        "queue_wait_p50_s": percentile(waits, 50),
        "queue_wait_p95_s": percentile(waits, 95),
        "queue_wait_max_s": round(max(waits), 3) if waits else None,
        "stage_ms_p50": {name: percentile(values, 50) for name, values in took.items()},
        "release_statuses": _statuses(release_ids),
    }


def _statuses(release_ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from releases.models import Release

    return dict(Release.objects.filter(pk__in=release_ids).values_list("status").annotate(n=Count("id")))


def postgres_snapshot() -> dict[str, int]:
    """The benchmark database's counters (pg_stat_database) and size."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched, "
                       "pg_database_size(datname) FROM pg_stat_database WHERE datname = current_database()")
        names = ("commits", "rollbacks", "inserted", "updated", "deleted", "fetched", "size_bytes")
        return dict(zip(names, cursor.fetchone(), strict=True))


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    from bench.scale_services import cpu_seconds

    return {kind: {pid: cpu_seconds(pid) for pid in found} for kind, found in pids.items()}


def cpu_figures(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], builds: int) -> dict:
    """CPU milliseconds per build by process kind, and the builds per minute that would keep every core
    of this machine busy (other load aside). A process that started during the day counts whole."""
    per_build = {kind: round(sum(used - before.get(kind, {}).get(pid, 0.0) for pid, used in now.items())
                             * 1000 / builds, 1) for kind, now in after.items()}
    total = sum(per_build.values())
    return {"cpu_ms_per_build": per_build, "cpu_ms_per_build_total": round(total, 1),
            "cpu_bound_builds_per_minute": round((os.cpu_count() or 1) * 60_000 / total) if total else None}


def postgres_figures(before: dict[str, int], after: dict[str, int], seconds: float, builds: int) -> dict:
    delta = {name: after[name] - before[name] for name in before}
    return {
        "pg_commits_per_s": round(delta["commits"] / seconds, 1),
        "pg_rows_written_per_s": round((delta["inserted"] + delta["updated"] + delta["deleted"]) / seconds, 1),
        "pg_rows_written_per_build": round((delta["inserted"] + delta["updated"] + delta["deleted"]) / builds, 1),
        "pg_bytes_per_build": round(delta["size_bytes"] / builds),
    }


def redis_snapshot(client) -> dict[str, int]:
    stats, memory = client.info("stats"), client.info("memory")
    return {"commands": stats["total_commands_processed"], "peak_memory_bytes": memory["used_memory_peak"]}


def redis_figures(before: dict[str, int], after: dict[str, int], seconds: float, builds: int) -> dict:
    commands = after["commands"] - before["commands"]
    return {
        "redis_commands_per_s": round(commands / seconds, 1),
        "redis_commands_per_build": round(commands / builds, 1),
        "redis_peak_memory_mb": round(after["peak_memory_bytes"] / 1e6, 2),
    }


def memory_figures(peaks: dict[str, dict], bench_peak_mb: float | None) -> dict:
    """Peak RSS per process kind, in MB: the largest process of each kind."""
    def largest(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return {
        "peak_rss_mb": {
            "web_process": largest(peaks.get("web", {}).get("children", [])),
            "web_master": peaks.get("web", {}).get("main"),
            "worker_process": largest(peaks.get("worker", {}).get("children", [])),
            "worker_parent": peaks.get("worker", {}).get("main"),
            "redis": peaks.get("redis", {}).get("main"),
            "ci_clients_and_bench": bench_peak_mb,
        }
    }
