"""What every process prints when nothing is wrong: nothing that looks like a problem."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

ROOT = Path(__file__).resolve().parents[1]


def test_a_manage_py_command_prints_no_banner(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DJANGO_SETTINGS_MODULE": "slipway.settings", "SLIPWAY_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "System check identified no issues (0 silenced).\n", "")


def test_the_embedded_broker_url_gives_kombu_its_hostname(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kombu")
    info = Connection(f"redis+socket://{tmp_path}/redis.sock").info()
    assert info["transport"] == "redis" and info["hostname"] == f"redis+socket://{tmp_path}/redis.sock"
    assert caplog.records == []
    Connection("filesystem://").info()  # what the embedded default used before: it warns
    assert "No hostname was supplied" in caplog.text
