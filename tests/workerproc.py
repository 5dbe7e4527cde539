"""Extra real `celery worker` processes with their own environment (other queues, another store), how
every test process is stopped and reaches the test database (tests/conftest.py's worker and beat too),
and a way to keep the session's worker (tests/conftest.py) off the queues meanwhile."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from slipway.celery import QUEUES, app

SESSION_WORKER = f"test-worker@{socket.gethostname()}"


def worker_database_url() -> str:
    """The test database, as a worker process started by the tests reaches it."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(name: str, queues: str, log_path: Path, env: dict[str, str], concurrency: int = 1) -> subprocess.Popen:
    """A worker on the test database and broker, with `env` on top of this process's environment."""
    full_env = os.environ | {"DATABASE_URL": worker_database_url(), "DJANGO_SETTINGS_MODULE": "slipway.settings",
                             "REDIS_URL": settings.REDIS_URL} | env
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "slipway", "worker", "-Q", queues, "-c", str(concurrency),
             "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            env=full_env, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen) -> None:
    """SIGTERM (a worker finishes its tasks, beat its tick), SIGKILL after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_worker(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=1):
            return
    raise AssertionError(f"worker {name} did not answer a ping within {timeout:.0f} s")


@contextmanager
def session_worker_off_the_queues(session_worker: subprocess.Popen) -> Iterator[None]:
    """The session's worker stops taking tasks (it keeps running) until the block ends."""
    wait_for_worker("test-worker")
    for queue in QUEUES:
        assert app.control.cancel_consumer(queue, destination=[SESSION_WORKER], reply=True, timeout=5)
    try:
        yield
    finally:
        for queue in QUEUES:
            app.control.add_consumer(queue, destination=[SESSION_WORKER], reply=True, timeout=5)
