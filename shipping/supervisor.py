"""A small process supervisor: children started in order, restarted when they die, stopped in reverse.

Each child runs in a process group of its own, so that stopping it reaches its own children
(gunicorn's and Celery's worker processes) and a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in its own order. A child that exits while the
supervisor runs is logged and started again, after a pause that doubles (up to a minute) while
it keeps dying within seconds of its start. What runs is written to a JSON status file at every
change (pid, starts, crashes, last exit), which is what `bench/soak.py` reads.

Why not supervisord or circus: they start and restart children well, but the demo also has to
post its first build once the web answers, print its logins, and on the way out stop the model
servers and HAProxy that the worker started outside its process tree (shipping/cleanup.py);
around a foreign daemon that is more code than this file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("slipway.supervisor")
QUICK_DEATH_S = 10.0
MAX_PAUSE_S = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    log_path: Path | None = None  # None: the supervisor's own stdout and stderr
    ready: Callable[[], bool] | None = None  # start() waits for it before the next child
    proc: subprocess.Popen | None = field(default=None, repr=False)
    starts: int = 0
    crashes: int = 0
    last_exit: str = ""
    started_at: float = 0.0
    restart_at: float | None = None
    pause: float = 0.5  # doubled before each quick restart: 1 s, 2 s, 4 s ... up to MAX_PAUSE_S

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


class Supervisor:
    def __init__(self, children: list[Child], status_path: Path | None = None) -> None:
        self.children = children
        self.status_path = status_path

    def start(self, ready_timeout: float = 60.0) -> None:
        """Start every child in order; a child with a ``ready`` check is waited for before the next."""
        for child in self.children:
            self._spawn(child)
            if child.ready is not None:
                self._wait_ready(child, ready_timeout)
        self._write_status()

    def _wait_ready(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ready, proc = child.ready, child.proc
        assert ready is not None and proc is not None, "a started child with a ready check"
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{child.name} {describe_exit(proc.returncode)} while starting"
                                   + (f"; see {child.log_path}" if child.log_path else ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} was not ready within {timeout:.0f} s")
            time.sleep(0.1)

    def _spawn(self, child: Child) -> None:
        output = None
        if child.log_path is not None:
            child.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = child.log_path.open("ab")
        try:
            child.proc = subprocess.Popen(child.argv, env=child.env, stdin=subprocess.DEVNULL, stdout=output,
                                          stderr=subprocess.STDOUT if output else None, start_new_session=True)
        finally:
            if output is not None:
                output.close()
        child.starts += 1
        child.started_at = time.monotonic()
        child.restart_at = None
        if child.starts > 1:
            log.warning("%s started again (pid %s, start %d)", child.name, child.proc.pid, child.starts)

    def poll(self) -> None:
        """Notice children that died and start them again when their pause is over; call it often."""
        changed = False
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._spawn(child)
                    changed = True
                continue
            proc = child.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                continue
            _signal_group(proc, signal.SIGKILL)  # what it leaves behind of its group goes with it
            child.crashes += 1
            child.last_exit = describe_exit(code)
            quick = now - child.started_at < QUICK_DEATH_S
            child.pause = min(child.pause * 2, MAX_PAUSE_S) if quick else 1.0
            child.restart_at = now + child.pause
            log.error("%s (pid %s) %s; starting it again in %.0f s", child.name, proc.pid,
                      child.last_exit, child.pause)
            changed = True
        if changed:
            self._write_status()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the children in reverse order: SIGTERM to each one's group, SIGKILL after ``timeout``."""
        for child in reversed(self.children):
            child.restart_at = None
            if child.proc is None:
                continue
            _signal_group(child.proc, signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0f s; killing it", child.name, timeout)
            _signal_group(child.proc, signal.SIGKILL)  # whatever of its group is left
            child.proc.wait()
        self._write_status()

    def status(self) -> dict[str, dict]:
        return {c.name: {"pid": c.pid, "starts": c.starts, "crashes": c.crashes, "last_exit": c.last_exit}
                for c in self.children}

    def _write_status(self) -> None:
        if self.status_path is not None:
            temporary = self.status_path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"supervisor_pid": os.getpid(), "children": self.status()}))
            temporary.replace(self.status_path)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)  # the child leads its group (start_new_session)
