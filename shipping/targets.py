"""Where a release's model server runs: the Target interface and what it starts.

An Instance is plain data (kind, handle, host, port) so it can be stored and used again from
another process: a local process is found by its pid, a container by its id.
Implementations: local_target.LocalTarget, docker_target.DockerTarget.
"""

from __future__ import annotations

import http.client
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

READY_PATH = "/readyz"


class TargetError(RuntimeError):
    """An instance could not be started or stopped."""


class HealthCheckFailed(TargetError):
    """The instance did not become ready: it must never be given traffic."""


@dataclass(frozen=True)
class InstanceSpec:
    release_id: str
    environment: str
    port: int
    model_name: str = "model"
    version: str = ""
    sha256: str = ""
    model_path: Path | None = None  # what LocalTarget serves
    profile_path: Path | None = None  # its monitoring profile (LocalTarget; images carry their own)
    image: str | None = None  # what DockerTarget runs (the model is baked in)
    host: str = "127.0.0.1"
    threads: int = 8
    intra_op_threads: int = 1
    control_token: str = ""  # lets Slipway set the server's shadow at run time (PUT /v1/shadow)


@dataclass(frozen=True)
class Instance:
    kind: str
    handle: str  # pid for local processes, container id for Docker
    release_id: str
    environment: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Started:
    """An instance a target runs, and when it was started (seconds since the epoch)."""

    instance: Instance
    at: float


class Target(ABC):
    kind: str

    @abstractmethod
    def start(self, spec: InstanceSpec) -> Instance:
        """Start an instance and return at once; it is not ready yet (see wait_ready)."""

    @abstractmethod
    def stop(self, instance: Instance, timeout: float = 30.0) -> None:
        """Ask the instance to finish its in-flight requests and exit; kill it after ``timeout``."""

    @abstractmethod
    def is_alive(self, instance: Instance) -> bool: ...

    @abstractmethod
    def logs(self, instance: Instance, lines: int = 40) -> str: ...

    def started(self) -> list[Started]:
        """Every instance this target started that is still there, whatever records it (the reaper of servers
        no record references reads it). A target that cannot tell its own from others' lists none."""
        return []

    def wait_ready(self, instance: Instance, timeout: float = 60.0) -> None:
        """Return once /readyz answers 200 as this release; raise HealthCheckFailed otherwise.

        Fails fast when the process exits or the server reports that its model failed to load,
        and refuses a server on that port that answers as another release.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if not self.is_alive(instance):
                self._fail(instance, "the server exited")
            try:
                # Each answer is awaited at most 2 s, and never past the deadline.
                status, served, body = ready_answer(instance, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            except (OSError, http.client.HTTPException) as error:
                last = f"{type(error).__name__}"
            else:
                if served != instance.release_id:
                    self._fail(instance, f"port {instance.port} answers as release {served!r}")
                if status == 200:
                    return
                if body.get("status") == "failed":
                    self._fail(instance, f"the model failed to load: {body.get('error')}")
                last = f"HTTP {status} {body.get('status', '')}".strip()
            if time.monotonic() > deadline:
                self._fail(instance, f"not ready after {timeout:.0f} s (last: {last})")
            time.sleep(0.1)

    def launch(self, spec: InstanceSpec, timeout: float = 60.0) -> Instance:
        """start() then wait_ready(); an instance that fails its health check is stopped."""
        instance = self.start(spec)
        try:
            self.wait_ready(instance, timeout)
        except HealthCheckFailed:
            self.stop(instance, timeout=5)
            raise
        return instance

    def _fail(self, instance: Instance, reason: str) -> NoReturn:
        raise HealthCheckFailed(
            f"release {instance.release_id} ({self.kind} {instance.handle}) at {instance.url} failed its "
            f"health check: {reason}\n--- last log lines ---\n{self.logs(instance)}"
        )


def ready_answer(instance: Instance, timeout: float) -> tuple[int, str | None, dict]:
    """One GET of the instance's /readyz: the status, the release it answers as (X-Release-Id) and its
    JSON body ({} when it has none). Plain http.client on the instance's own address: a rollback checks
    its warm release this way before traffic moves, so it costs a fraction of a millisecond of CPU."""
    connection = http.client.HTTPConnection(instance.host, instance.port, timeout=timeout)
    try:
        connection.request("GET", READY_PATH)
        answer = connection.getresponse()
        raw = answer.read()
    finally:
        connection.close()
    try:
        body = json.loads(raw) if answer.getheader("Content-Type") == "application/json" else {}
    except ValueError:
        body = {}
    return answer.status, answer.getheader("X-Release-Id"), body if isinstance(body, dict) else {}
