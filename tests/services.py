"""Checks that the services the tests use are up, with the command that starts each one."""

import socket
from urllib.parse import urlparse

START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def require(name: str, url: str) -> None:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
    except OSError as exc:
        raise RuntimeError(f"{name} is not reachable at {parsed.hostname}:{parsed.port} ({exc}). "
                           f"Start it with: {START[name]}") from None
