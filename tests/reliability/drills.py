"""The fault drills' view from the web side: the sweeper, waiting for stages and releases, cutting
database connections, and the figures a drill is judged by. Used by tests/reliability/ and bench/faults.py
(the processes are in tests/reliability/processes.py)."""

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

import psycopg
from celery import current_app
from django.db import close_old_connections, connection
from django.db.models import Count

from releases.models import AuditEvent, Release, StageRun, TrafficChange
from releases.models.pipeline import StageStatus
from releases.sweeper import sweep
from workers.heartbeat import Periodic

BUSY = [StageStatus.QUEUED, StageStatus.RUNNING]


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's task producer (the web's, the sweeper's) at `url` for the block."""
    app = current_app
    before = app.conf.broker_url
    _drop_producers(app, close=False)  # kombu keeps it by URL: the next test's sends take it up again
    app.conf.broker_url = url
    try:
        yield
    finally:
        _drop_producers(app, close=True)  # this test's broker, gone with it
        app.conf.broker_url = before


def _drop_producers(app, *, close: bool) -> None:
    # What Celery itself does after a fork (Celery._after_fork): the next send connects anew.
    if close and app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


class Sweeper(Periodic):
    """The sweeper every `every` seconds in a thread, as Celery beat runs it in production; `totals` adds
    up what it did."""

    def __init__(self, every: float = 0.5) -> None:
        self.totals: Counter = Counter()
        super().__init__(every, self._sweep, "sweeper")

    def _sweep(self) -> bool:
        close_old_connections()
        try:
            self.totals.update(sweep())
        except Exception:  # the database or the broker is down right now: next round
            connection.close()
        return True


def wait_for_stage(release_id: int, name: str, status: str, timeout: float = 120) -> StageRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stage = StageRun.objects.filter(release_id=release_id, name=name, status=status).first()
        if stage is not None:
            return stage
        time.sleep(0.02)
    raise AssertionError(f"stage {name} of release {release_id} never was {status}: "
                         f"{list(StageRun.objects.filter(release_id=release_id).values_list('name', 'status'))}")


def wait_for_all(release_ids: list[int], statuses: set[str], timeout: float) -> dict[int, str]:
    """Poll until every release is in one of `statuses` (or the time is up); their statuses."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        found = dict(Release.objects.filter(pk__in=release_ids).values_list("pk", "status"))
        if all(found.get(pk) in statuses for pk in release_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def terminate_backends(database_url: str) -> int:
    """Cut every connection to the database of `database_url` from the server side, as a PostgreSQL
    restart does to its clients (the shared server itself is never restarted)."""
    url = urlparse(database_url)
    name = url.path.lstrip("/")
    admin_url = urlunparse(url._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", [name]).fetchall()
    return sum(1 for (done,) in rows if done)


def figures(release_ids: list[int], reached: dict[int, str], wanted: set[str]) -> dict[str, int]:
    """Releases that did not get where they should, stages left queued or running, and releases put in
    service more than once in one environment (two deploys of one release)."""
    close_old_connections()
    lost = sum(1 for pk in release_ids if reached.get(pk) not in wanted)
    stuck = StageRun.objects.filter(release_id__in=release_ids, status__in=BUSY).count()
    deploys = (TrafficChange.objects.filter(action__in=["deploy", "canary"], reason__in=[f"release #{pk}" for pk in
                                                                                        release_ids])
               .values("service", "reason").annotate(n=Count("id")).filter(n__gt=1).count())
    return {"releases_lost": lost, "stages_stuck": stuck, "double_deploys": deploys}


def retries(release_ids: list[int]) -> int:
    """Runs of stages that were lost (a worker killed, a database connection cut) and queued again."""
    return AuditEvent.objects.filter(release_id__in=release_ids, action="stage.queue",
                                     before__status=StageStatus.RUNNING).count()
