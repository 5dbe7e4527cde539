"""The processes bench/scale.py runs: its own Redis, a gunicorn web and a Celery worker with 8 processes.

Every process is started with the benchmark's environment (its database, Redis and data folder)
and stopped by its own id at the end. Peak memory is read from each process's kernel high-water
mark (VmHWM in /proc/<pid>/status) just before it stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]



def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory so far, in MB (VmHWM), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_of(database: str) -> list[int]:
    """PostgreSQL's server processes for connections to ``database`` (by their process titles)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            found.append(int(cmdline.parent.name))
    return found


class BackendCpu(threading.Thread):
    """Samples the CPU time of the database's backends every half second, so that a backend whose
    connection closes during the day (CONN_MAX_AGE) still counts up to its last sample."""

    def __init__(self, database: str) -> None:
        super().__init__(name="backend-cpu", daemon=True)
        self.database = database
        self.last: dict[int, float] = {}
        self.done = threading.Event()

    def sample(self) -> None:
        for pid in backends_of(self.database):
            used = cpu_seconds(pid)
            if used:
                self.last[pid] = used

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.sample()

    def stop(self) -> dict[int, float]:
        self.done.set()
        self.join()
        self.sample()
        return dict(self.last)


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see its log")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path

    def peaks(self) -> dict[str, float | None]:
        """Peak RSS of the main process and of each child process."""
        return {"main": peak_rss_mb(self.process.pid),
                "children": [peak_rss_mb(pid) for pid in children(self.process.pid)]}

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Services:
    """Started in order, stopped in reverse; ``peaks`` is filled by :meth:`stop`."""

    folder: Path
    running: list[Service] = field(default_factory=list)
    peaks: dict[str, dict] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Service:
        log_path = self.folder / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        service = Service(name, process, log_path)
        self.running.append(service)
        return service

    def redis(self, port: int) -> Service:
        service = self.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                       "--appendonly", "no"], dict(os.environ))
        wait_for_port(port, service.process, "redis-server")
        return service

    def web(self, port: int, processes: int) -> Service:
        service = self.start("web", [sys.executable, "-m", "gunicorn", "bench.scale_probe:application",
                                     "--workers", str(processes), "--bind", f"127.0.0.1:{port}",
                                     "--backlog", "256", "--timeout", "120"], dict(os.environ))
        wait_for_port(port, service.process, "gunicorn")
        return service

    def worker(self, processes: int) -> Service:
        service = self.start("worker", [sys.executable, "-m", "celery", "-A", "bench.scale_probe", "worker",
                                        "--pool", "prefork", "--concurrency", str(processes), "-Q", "cpu,gpu",
                                        "-n", "bench-scale@%h", "--loglevel", "WARNING", "--without-gossip",
                                        "--without-mingle", "--without-heartbeat"], dict(os.environ))
        ready = redis.Redis.from_url(os.environ["REDIS_URL"])
        deadline = time.monotonic() + 120
        while len(children(service.process.pid)) < processes or not ready.ping():
            if service.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start; see {service.log_path}")
            time.sleep(0.2)
        return service

    def pids(self) -> dict[str, list[int]]:
        return {service.name: service.pids() for service in self.running}

    def stop(self) -> None:
        for service in reversed(self.running):
            self.peaks[service.name] = service.peaks()
            service.stop()
        self.running.clear()
