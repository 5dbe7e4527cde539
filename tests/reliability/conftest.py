"""Fixtures of the fault drills: a Redis server of the test's own and worker processes it may kill."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.drills import celery_broker
from tests.reliability.processes import HEARTBEAT_TIMEOUT_S, RESEND_AFTER_S, RedisServer, Worker, worker_env
from tests.workerproc import worker_database_url


@pytest.fixture
def own_broker(tmp_path: Path, settings) -> Iterator[RedisServer]:
    """A Redis of this test's own (the shared one is never stopped), with this process's sender and sweeper
    pointed at it and the drills' stage thresholds."""
    settings.SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S = HEARTBEAT_TIMEOUT_S
    settings.SLIPWAY_STAGE_RESEND_AFTER_S = RESEND_AFTER_S
    server = RedisServer(tmp_path)
    server.start()
    with celery_broker(server.url):
        yield server
    if server.proc.poll() is None:
        server.stop()


@pytest.fixture
def drill_worker(own_broker: RedisServer, tmp_path: Path, transactional_db) -> Iterator[Callable[[str], Worker]]:
    """Start a worker process on the test database and the test's own Redis; all are killed afterwards."""
    started: list[Worker] = []

    def start(name: str) -> Worker:
        started.append(Worker(name, worker_env(worker_database_url(), own_broker.url), tmp_path / f"{name}.log"))
        return started[-1]

    yield start
    for worker in started:  # killed: what a worker ran last is flushed with the database anyway
        worker.kill()
