"""Query counting inside bench/scale.py's server processes: the web (gunicorn) and the Celery workers.

Each process counts the SQL statements Django sends on its connection (an execute wrapper, so the
count is taken on the server side, where the queries are made) and appends one JSON line per
request or per task to ``$BENCH_SCALE_PROBE_DIR/<kind>-<pid>.jsonl``:

* web: ``{"kind": "post" | "poll" | "rollback" | "other", "release": id or null, "queries": n, "ms": t}``
* worker: ``{"kind": "stage", "release": id, "stage": name, "queries": n}``

Loaded only by the benchmark: ``gunicorn bench.scale_probe:application`` and
``celery -A bench.scale_probe worker``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from celery import signals

from slipway.celery import app  # noqa: F401 - the Celery application the workers run
from slipway.wsgi import application as slipway_application

PROBE_DIR = Path(os.environ.get("BENCH_SCALE_PROBE_DIR", "."))


class QueryCounter:
    """A Django execute wrapper that counts the statements sent through it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        self.count += 1
        return execute(sql, params, many, context)


def _append(kind: str, row: dict) -> None:
    with open(PROBE_DIR / f"{kind}-{os.getpid()}.jsonl", "a") as out:
        out.write(json.dumps(row) + "\n")


def _request_kind(method: str, path: str) -> str:
    if method == "POST" and path == "/api/v1/builds/":
        return "post"
    if method == "POST" and path.endswith("/rollback/"):
        return "rollback"
    if method == "GET" and path.startswith("/api/v1/releases/"):
        return "poll"
    return "other"


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Slipway's WSGI application, counting each request's queries (the body is read here, so the
    time includes the whole response)."""
    from django.db import connection

    counter = QueryCounter()
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        body = b"".join(slipway_application(environ, start_response))
    kind = _request_kind(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
    release = None
    if kind == "post" and body.startswith(b"{"):
        release = (json.loads(body).get("release") or {}).get("id")
    _append("web", {"kind": kind, "release": release, "queries": counter.count,
                    "ms": round((time.perf_counter() - started) * 1000, 2)})
    return [body]


_worker_counter = QueryCounter()


@signals.worker_process_init.connect
def _count_in_child(**_: object) -> None:
    from django.db import connection

    connection.execute_wrappers.append(_worker_counter)


@signals.task_prerun.connect
def _task_starts(**_: object) -> None:
    _worker_counter.count = 0


@signals.task_postrun.connect
def _task_ends(task: object = None, kwargs: dict | None = None, **_: object) -> None:
    kwargs = kwargs or {}
    if "stage" in kwargs:
        _append("worker", {"kind": "stage", "release": kwargs.get("release_id"), "stage": kwargs["stage"],
                           "queries": _worker_counter.count})
