"""The demo's supervisor on real processes: a child that dies is started again; stop() leaves nothing."""

import json
import os
import signal
import sys
import time
from pathlib import Path

from shipping.supervisor import Child, Supervisor

# A child that starts a grandchild in its own group, as gunicorn and Celery start their workers.
PARENT = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); " \
         "time.sleep(600)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition was not met in time"
        time.sleep(0.05)


def test_a_killed_child_is_restarted_and_logged_and_stop_leaves_nothing(tmp_path: Path, caplog) -> None:
    status = tmp_path / "status.json"
    supervisor = Supervisor([Child("first", [sys.executable, "-c", PARENT]),
                             Child("second", [sys.executable, "-c", "import time; time.sleep(600)"])], status)
    supervisor.start()
    try:
        first = supervisor.children[0]
        killed = first.pid
        os.kill(killed, signal.SIGKILL)
        _wait(lambda: (supervisor.poll(), first.pid not in (None, killed))[1])
        written = json.loads(status.read_text())
        assert written["children"]["first"] == {"pid": first.pid, "starts": 2, "crashes": 1,
                                                "last_exit": "killed by SIGKILL"}
        assert written["children"]["second"]["starts"] == 1
        assert f"first (pid {killed}) killed by SIGKILL; starting it again in 1 s" in caplog.text
        assert not _group_alive(killed)  # the dead child's own child went with it
        groups = [child.pid for child in supervisor.children]
    finally:
        supervisor.stop(timeout=5)
    assert not any(_group_alive(pgid) for pgid in groups)
    assert json.loads(status.read_text())["children"]["first"]["pid"] is None


def test_a_child_that_keeps_dying_waits_longer_each_time(tmp_path: Path) -> None:
    supervisor = Supervisor([Child("failing", [sys.executable, "-c", "raise SystemExit(3)"])])
    supervisor.start()
    child = supervisor.children[0]
    _wait(lambda: (supervisor.poll(), child.crashes == 2)[1])
    assert (child.last_exit, child.pause) == ("exited with code 3", 2.0)
    supervisor.stop()
