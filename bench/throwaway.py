"""A throwaway PostgreSQL database and data folder for a benchmark; call configure() before Django loads.

The database is dropped and created afresh by recreate_database() and dropped by drop_database();
nothing else is touched. BENCH_DATABASE_URL picks another server or name. From configure() on,
SIGTERM and SIGHUP end the bench as Ctrl-C does, so its `finally` blocks run; clean_up() stops the
model servers (registered in serving_pids()) and the HAProxy that the bench started.
"""

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from shipping.cleanup import stop_on_signals, stop_serving


def configure(name: str, **extra: str) -> Path:
    """Point Slipway's settings at the benchmark's database and a fresh data folder; returns the folder."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    (data_dir / "static").mkdir()  # STATIC_ROOT: WhiteNoise warns on every request without it
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "slipway.settings",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{name}"),
        "REDIS_URL": "",
        "SLIPWAY_DATA_DIR": str(data_dir),
        "SLIPWAY_ALLOWED_HOSTS": "testserver",
        "SLIPWAY_LOG_LEVEL": "WARNING",
        **extra,
    })
    stop_on_signals()
    return data_dir


def serving_pids() -> Path:
    """The pid folder of every model server the bench starts (LocalTarget's pid_dir), as the worker's."""
    return Path(os.environ["SLIPWAY_DATA_DIR"]) / "serving" / "pids"


def clean_up() -> list[str]:
    """Stop the model servers and the HAProxy of the bench's data folder, however the bench ended."""
    return stop_serving(Path(os.environ["SLIPWAY_DATA_DIR"]) / "proxy", serving_pids())


def database_name() -> str:
    return urlparse(os.environ["DATABASE_URL"]).path.lstrip("/")


def _admin_connection() -> psycopg.Connection:
    url = urlparse(os.environ["DATABASE_URL"])
    return psycopg.connect(urlunparse(url._replace(scheme="postgresql", path="/postgres")), autocommit=True)


def recreate_database() -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name()}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database_name()}"')


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name()}" WITH (FORCE)')
