"""Free TCP ports for model server instances (each instance listens on its own port)."""

from __future__ import annotations

import random
import socket
import threading
from collections import deque
from collections.abc import Iterable


class NoFreePort(RuntimeError):
    pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now (connections in TIME_WAIT do not count,
    as servers bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports in [low, high] that nothing listens on.

    Ports are tried in random order and the last ones handed out are not handed out again, so
    two instances started at nearly the same time do not get the same port. Ports known to be
    taken by instances that are not listening yet (e.g. read from the database) go in ``exclude``.
    """

    def __init__(self, low: int = 9100, high: int = 9899, host: str = "127.0.0.1", remember: int = 64) -> None:
        if not 0 < low <= high < 65536:
            raise ValueError(f"bad port range {low}-{high}")
        self.low, self.high, self.host = low, high, host
        self._recent: deque[int] = deque(maxlen=remember)
        self._lock = threading.Lock()

    def allocate(self, exclude: Iterable[int] = ()) -> int:
        skip = set(exclude)
        candidates = list(range(self.low, self.high + 1))
        random.shuffle(candidates)
        with self._lock:
            skip.update(self._recent)
            for port in candidates:
                if port not in skip and port_is_free(port, self.host):
                    self._recent.append(port)
                    return port
        raise NoFreePort(f"no free port in {self.low}-{self.high} on {self.host}")


def ephemeral_port(host: str = "127.0.0.1") -> int:
    """A port free now, as the operating system picks one (for servers started by tests and benches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
