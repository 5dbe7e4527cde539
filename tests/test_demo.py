"""`manage.py demo` as a new user runs it: SQLite, its own redis-server on a unix socket, web, worker and
beat under its supervisor. A worker killed mid-pipeline is started again and the build still reaches its
gate; after an approval puts it in staging (HAProxy and a model server, started by the worker), SIGTERM
leaves nothing of the demo running and nothing listening on its ports.

One test, about a minute and a half: it is the only run of the embedded default end to end.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from releases.management.demo_model import digits_model
from shipping.ports import ephemeral_port, port_is_free

ROOT = Path(__file__).resolve().parents[1]
SLOT = int(os.environ.get("SLIPWAY_TEST_SLOT", "0"))
FAST_SWEEPER = {"SLIPWAY_STAGE_HEARTBEAT_S": "1", "SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S": "6",
                "SLIPWAY_SWEEP_EVERY_S": "2", "SLIPWAY_STAGE_RESEND_AFTER_S": "6"}


def _wait(what: str, condition: Callable[[], object], timeout: float = 240) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return found


def _status(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / "demo-status.json").read_text())["children"]
    except (OSError, ValueError):
        return {}


def _release(base: str, token: str) -> dict:
    return requests.get(f"{base}/api/v1/releases/1/", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()


def _ours(data_dir: Path) -> list[str]:
    """Processes whose command line names the demo's data folder (redis, beat, HAProxy, model servers)."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line.strip() for line in listing.splitlines() if str(data_dir) in line and "ps -ww -eo" not in line]


@pytest.fixture
def demo_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="slipway-demo-", dir="/tmp"))  # short: the broker's socket is in it
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_demo_restarts_a_killed_worker_and_sigterm_leaves_nothing(demo_dir: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("haproxy") is None:
        pytest.fail("the demo needs redis-server and haproxy: bash deploy/install-system-deps.sh demo")
    port, first_proxy = ephemeral_port(), 18081 + 10 * SLOT + 5
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env |= FAST_SWEEPER | {"DJANGO_SETTINGS_MODULE": "slipway.settings", "SLIPWAY_DATA_DIR": str(demo_dir),
                           "SLIPWAY_FIRST_PROXY_PORT": str(first_proxy), "PYTHONPATH": str(ROOT)}
    base = f"http://127.0.0.1:{port}"
    demo = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait("the demo build", lambda: (demo_dir / "demo-ci-token").exists() and _status(demo_dir).get("worker"))
        token = (demo_dir / "demo-ci-token").read_text().strip()
        # The build's files, for README's next version (`slipway push var/demo-build/...`): the demo's own.
        _wait("the demo build's files", lambda: (demo_dir / "demo-build" / "digits-eval.npz").exists())
        assert (demo_dir / "demo-build" / "digits.onnx").read_bytes() == digits_model().onnx_bytes
        _wait("the first release", lambda: requests.get(f"{base}/login/", timeout=5).ok
              and _release(base, token).get("id") == 1)
        killed = _status(demo_dir)["worker"]["pid"]
        os.killpg(killed, signal.SIGKILL)  # the worker and its pool, as a crash would
        restarted = _wait("the worker's restart", lambda: _status(demo_dir)["worker"]["starts"] == 2
                          and _status(demo_dir)["worker"])
        assert (restarted["crashes"], restarted["last_exit"]) == (1, "killed by SIGKILL")
        assert restarted["pid"] != killed and _status(demo_dir)["web"]["starts"] == 1

        assert _wait("the gate", lambda: _release(base, token)["status"] in ("awaiting_approval", "failed")) \
            and _release(base, token)["status"] == "awaiting_approval"
        approver = subprocess.run([sys.executable, "manage.py", "createtoken", "alice", "--scope", "approve"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()
        requests.post(f"{base}/api/v1/releases/1/approve/", json={"comment": "ok"}, timeout=10,
                      headers={"Authorization": f"Bearer {approver}"}).raise_for_status()
        _wait("staging", lambda: any(s["name"] == "deploy_staging" and s["status"] == "succeeded"
                                     for s in _release(base, token)["stages"]))
        assert requests.get(f"http://127.0.0.1:{first_proxy}/v2/models/digits/ready", timeout=5).status_code == 200
        running = _ours(demo_dir)
        assert any("haproxy" in line for line in running) and any("serving" in line for line in running)
        worker = _status(demo_dir)["worker"]["pid"]
    finally:
        demo.send_signal(signal.SIGTERM)
        output = demo.communicate(timeout=90)[0]
    assert demo.returncode == 0, output[-3000:]
    assert "stopped HAProxy pid" in output and "stopped model server pid" in output
    assert _ours(demo_dir) == []
    assert not os.path.exists(f"/proc/{worker}")
    assert all(port_is_free(p) for p in (port, first_proxy, first_proxy + 1))
