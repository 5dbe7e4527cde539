"""Processes of the fault drills, no Django needed: a Redis server of our own (so it can be stopped) and
Celery worker processes that can be killed with SIGKILL. Stage thresholds are seconds here (DRILL_ENV),
so a lost worker is noticed and its stage retried within seconds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from shipping.ports import ephemeral_port

HEARTBEAT_S, HEARTBEAT_TIMEOUT_S, RESEND_AFTER_S = 0.5, 3.0, 2.0
DRILL_ENV = {"SLIPWAY_STAGE_HEARTBEAT_S": str(HEARTBEAT_S), "SLIPWAY_STAGE_RESEND_AFTER_S": str(RESEND_AFTER_S),
             "SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S), "SLIPWAY_LOG_LEVEL": "INFO"}



class RedisServer:
    """`redis-server` on a free loopback port, nothing persisted: stopping it loses every message."""

    def __init__(self, folder: Path) -> None:
        self.port, self.log_path, self.proc = ephemeral_port(), folder / "redis.log", None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log_path.read_text()[-500:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Worker:
    """A `celery worker` (prefork, one child) in its own process group, so that kill() takes it down whole
    the way a machine that dies would: no task is finished, no message acknowledged."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, queues: str = "cpu,gpu,deploy") -> None:
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "slipway", "worker", "-Q", queues, "-c", "1", "-n",
                 f"{name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env=os.environ | env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_env(database_url: str, broker_url: str) -> dict[str, str]:
    return DRILL_ENV | {"DATABASE_URL": database_url, "REDIS_URL": broker_url,
                        "DJANGO_SETTINGS_MODULE": "slipway.settings"}
