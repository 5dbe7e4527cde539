"""Model servers as local processes (`python -m serving`): the embedded default and fast tests."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import serving
from shipping.targets import Instance, InstanceSpec, Started, Target, TargetError

SERVING_ROOT = Path(serving.__file__).resolve().parents[1]  # the folder `python -m serving` runs from

# The only variables a model server inherits: no secret key, database URL or password, cloud
# credentials or anything else of the process that starts it (options go as flags).
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

# Processes this process started, kept so they can be reaped (no zombies) and polled exactly.
_children: dict[int, subprocess.Popen] = {}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def server_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The minimal environment of a model server process."""
    search_path = [str(SERVING_ROOT), *filter(None, [parent.get("PYTHONPATH")])]
    kept = {name: parent[name] for name in INHERITED_VARIABLES if name in parent}
    return {**kept, "PYTHONPATH": os.pathsep.join(search_path), "PYTHONDONTWRITEBYTECODE": "1"}


class LocalTarget(Target):
    """Each instance is a `python -m serving` process in its own session, logging to ``log_dir``.

    An instance outlives the process that started it (e.g. a Celery task); any process can
    check or stop it by pid, which is verified against the command line to survive pid reuse.
    Each running instance is also registered in ``pid_dir`` (``log_dir/../pids`` unless given), so
    that whoever owns the folder can stop every instance at once (:func:`stop_registered`).
    """

    kind = "local"

    def __init__(self, log_dir: Path, python: str = sys.executable, pid_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.python = python
        self.pid_dir = pid_dir or log_dir.parent / "pids"

    def log_path(self, instance: Instance | InstanceSpec) -> Path:
        return self.log_dir / f"{_safe(instance.environment)}-{_safe(instance.release_id)}-{instance.port}.log"

    def start(self, spec: InstanceSpec) -> Instance:
        if spec.model_path is None:
            raise TargetError(f"release {spec.release_id}: a local instance needs a model_path")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.python,
            "-m",
            "serving",
            "--model",
            str(spec.model_path),
            "--port",
            str(spec.port),
            "--host",
            spec.host,
            "--model-name",
            spec.model_name,
            "--version",
            spec.version,
            "--sha256",
            spec.sha256,
            "--release-id",
            spec.release_id,
            "--threads",
            str(spec.threads),
            "--intra-op-threads",
            str(spec.intra_op_threads),
        ]
        if spec.profile_path is not None:
            command += ["--profile", str(spec.profile_path)]
        env = server_environment(os.environ)
        if spec.control_token:
            env["SLIPWAY_CONTROL_TOKEN"] = spec.control_token  # not on the command line, where ps shows it
        with self.log_path(spec).open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=SERVING_ROOT,
                start_new_session=True,
            )
        _children[process.pid] = process
        instance = Instance(self.kind, str(process.pid), spec.release_id, spec.environment, spec.host, spec.port)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        _registration(self.pid_dir, instance).write_text(json.dumps(asdict(instance)))
        return instance

    def is_alive(self, instance: Instance) -> bool:
        pid = int(instance.handle)
        if pid in _children:
            return _children[pid].poll() is None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
        options = dict(itertools.pairwise(command))
        ours = (
            b"serving" in command
            and options.get(b"--port") == str(instance.port).encode()
            and options.get(b"--release-id") == instance.release_id.encode()
        )
        return ours and not zombie

    def stop(self, instance: Instance, timeout: float = 30.0) -> None:
        _registration(self.pid_dir, instance).unlink(missing_ok=True)
        if not self.is_alive(instance):
            _children.pop(int(instance.handle), None)
            return
        pid = int(instance.handle)
        os.kill(pid, signal.SIGTERM)  # gunicorn finishes in-flight requests, then exits
        deadline = time.monotonic() + timeout
        while self.is_alive(instance) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.is_alive(instance):
            os.killpg(pid, signal.SIGKILL)
        if pid in _children:
            _children.pop(pid).wait()

    def started(self) -> list[Started]:
        """The running instances registered in the pid folder, started when they were registered."""
        found = []
        for instance in registered(self.pid_dir):
            try:
                at = _registration(self.pid_dir, instance).stat().st_mtime
            except FileNotFoundError:  # stopped meanwhile
                continue
            if self.is_alive(instance):
                found.append(Started(instance, at))
        return found

    def logs(self, instance: Instance, lines: int = 40) -> str:
        try:
            with self.log_path(instance).open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except FileNotFoundError:
            return "(no log)"


def _registration(pid_dir: Path, instance: Instance) -> Path:
    return pid_dir / f"{instance.handle}.json"


def registered(pid_dir: Path) -> list[Instance]:
    """The instances started with this pid folder and not stopped through it (some may have died)."""
    found = []
    for path in sorted(pid_dir.glob("*.json")):
        try:
            found.append(Instance(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
    return found


def stop_registered(pid_dir: Path, timeout: float = 10.0) -> list[Instance]:
    """Stop every model server registered in ``pid_dir``; returns those that were still running."""
    target = LocalTarget(log_dir=pid_dir.parent / "logs", pid_dir=pid_dir)
    running = [instance for instance in registered(pid_dir) if target.is_alive(instance)]
    for instance in running:
        os.kill(int(instance.handle), signal.SIGTERM)
    for instance in registered(pid_dir):
        target.stop(instance, timeout=timeout)
    return running
