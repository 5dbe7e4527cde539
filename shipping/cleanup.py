"""Stopping what a run of Slipway started outside its own process tree, on exit or on a signal.

HAProxy runs as a daemon and each local model server in a session of its own, so neither dies
with the process that started it (a worker that restarts must not take the servers down). The
demo and the benchmarks stop them here: the model servers registered in a pid folder
(shipping.local_target), then the HAProxy whose state folder (pid file, admin socket) is given.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shipping.local_target import stop_registered
from shipping.proxy import ProxyConfig
from shipping.proxy import stop as stop_proxy


def _haproxy_pid(proxy_dir: Path) -> int | None:
    try:
        pid = int((proxy_dir / "haproxy.pid").read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"haproxy" in command and str(proxy_dir).encode() in command else None


def stop_serving(proxy_dir: Path, pid_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop the registered model servers and the HAProxy of ``proxy_dir``; returns what was running."""
    stopped = [f"model server pid {i.handle} ({i.environment}, release {i.release_id}, port {i.port})"
               for i in stop_registered(pid_dir, timeout=timeout)]
    pid = _haproxy_pid(proxy_dir)
    if pid is not None:
        stop_proxy(ProxyConfig(state_dir=proxy_dir), timeout=timeout / 2)  # soft: open requests finish
        deadline = time.monotonic() + timeout / 2
        while _haproxy_pid(proxy_dir) == pid and time.monotonic() < deadline:
            try:
                os.kill(pid, signal.SIGTERM)  # hard: a keep-alive client does not keep it running
            except ProcessLookupError:
                break
            time.sleep(0.1)
        stopped.append(f"HAProxy pid {pid}")
    return stopped


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives, so that `finally` blocks run."""


def _raise_stopped(signum: int, _frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """From now on SIGTERM and SIGHUP end this program as Ctrl-C does: by an exception, cleanups run."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stopped)


@contextmanager
def serving_cleaned_up(proxy_dir: Path, pid_dir: Path) -> Iterator[None]:
    """Within the block a signal ends the program by an exception; at its end, however it ends,
    every model server registered in ``pid_dir`` and the HAProxy of ``proxy_dir`` are stopped."""
    stop_on_signals()
    try:
        yield
    finally:
        stop_serving(proxy_dir, pid_dir)
