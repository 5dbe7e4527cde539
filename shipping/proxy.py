"""Drive HAProxy: one stable frontend per environment, traffic moved through the runtime API.

Each environment's backend has pre-declared server slots (``slot1`` .. ``slotN``), in
maintenance until used. Putting an instance behind an environment fills a slot's address and
marks it ready; moving traffic changes weights over the admin socket, which takes effect for
the next request without a reload, so no connection is closed and no request fails.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from shipping.targets import Instance

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "deploy" / "haproxy"
MAX_WEIGHT = 256
# srv_admin_state bits that put a server in maintenance (HAProxy's SRV_ADMF_MAINT: forced, inherited,
# resolver). The "configured" bit 0x04 of a `disabled` slot stays set after `state ready`; it is not one.
_MAINTENANCE = 0x01 | 0x02 | 0x20
_OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


class ProxyError(RuntimeError):
    """HAProxy refused a configuration or a command."""


class ProxyUnavailable(ProxyError):
    """HAProxy is not running or its admin socket does not answer."""


@dataclass(frozen=True)
class ProxyConfig:
    state_dir: Path
    environments: Mapping[str, int] = field(default_factory=lambda: {"staging": 8081, "production": 8082})
    bind_host: str = "127.0.0.1"
    slots: int = 8
    stats_port: int | None = None
    haproxy: str = "haproxy"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "admin.sock"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "haproxy.pid"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def server_state_path(self) -> Path:
        return self.state_dir / "servers.state"

    def endpoint(self, environment: str) -> str:
        return f"http://{self.bind_host}:{self.environments[environment]}"


@dataclass(frozen=True)
class ServerState:
    slot: str
    address: str
    port: int
    weight: int
    operational: str  # up, down, starting, stopping
    maintenance: bool

    @property
    def serving(self) -> bool:
        """Whether new requests can reach this slot now."""
        return self.weight > 0 and not self.maintenance and self.operational == "up"


def render_config(config: ProxyConfig) -> str:
    def template(name: str) -> Template:
        return Template((TEMPLATE_DIR / name).read_text())

    environments = "".join(
        template("environment.cfg.tmpl").substitute(
            name=name, port=port, bind_host=config.bind_host, slots=config.slots
        )
        for name, port in config.environments.items()
    )
    stats = (
        ""
        if config.stats_port is None
        else template("stats.cfg.tmpl").substitute(bind_host=config.bind_host, port=config.stats_port)
    )
    return template("haproxy.cfg.tmpl").substitute(state_dir=config.state_dir, environments=environments, stats=stats)


def command(config: ProxyConfig, line: str, timeout: float = 5.0) -> str:
    """Send one line (commands may be joined with ';') to the admin socket; return the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(str(config.socket_path))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as error:
            raise ProxyUnavailable(f"HAProxy is not running (no answer on {config.socket_path}: {error})") from None
    return b"".join(chunks).decode()


def _running_pid(config: ProxyConfig) -> int | None:
    try:
        pid = int(config.pid_path.read_text().split()[0])
        command(config, "show info")
    except (OSError, ValueError, IndexError, ProxyUnavailable):
        return None
    return pid


def _wait_for_socket(config: ProxyConfig, old_pid: int | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _running_pid(config)
        if pid is not None and pid != old_pid:
            return
        time.sleep(0.05)
    raise ProxyUnavailable(f"HAProxy did not answer on {config.socket_path} within {timeout:.0f} s")


def ensure_running(config: ProxyConfig) -> None:
    """Write haproxy.cfg and start HAProxy, or reload it seamlessly when the configuration changed.

    A reload saves the runtime state (addresses, weights, maintenance) first and hands the
    listening sockets over (``-x``), so a configuration change does not undo traffic moves.
    """
    if shutil.which(config.haproxy) is None:
        raise ProxyUnavailable(f"{config.haproxy} is not installed: apt-get install -y haproxy")
    text = render_config(config)
    with _locked(config):
        pid = _running_pid(config)
        if pid is not None and config.config_path.is_file() and config.config_path.read_text() == text:
            return
        _start(config, text, pid)


def _start(config: ProxyConfig, text: str, pid: int | None) -> None:
    """Check ``text`` with ``haproxy -c``, install it, then start HAProxy or take over from ``pid``."""
    candidate = config.state_dir / "haproxy.cfg.new"
    candidate.write_text(text)
    check = subprocess.run([config.haproxy, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
    if check.returncode != 0:
        raise ProxyError(f"HAProxy rejects the configuration {candidate}:\n{check.stdout}{check.stderr}")
    candidate.replace(config.config_path)
    start = [config.haproxy, "-f", str(config.config_path)]
    if pid is not None:
        config.server_state_path.write_text(command(config, "show servers state"))
        start += ["-x", str(config.socket_path), "-sf", str(pid)]
    else:
        # A fresh start begins with every slot in maintenance; the caller re-applies traffic from its records.
        config.server_state_path.unlink(missing_ok=True)
    result = subprocess.run(start, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProxyError(f"HAProxy did not start:\n{result.stdout}{result.stderr}")
    _wait_for_socket(config, old_pid=pid)


def stop(config: ProxyConfig, timeout: float = 10.0) -> None:
    """Stop HAProxy softly (open requests finish); tests and benchmarks use it, production does not."""
    pid = _running_pid(config)
    if pid is None:
        return
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while _running_pid(config) == pid and time.monotonic() < deadline:
        time.sleep(0.05)


def servers(config: ProxyConfig, environment: str) -> list[ServerState]:
    """The slots of an environment's backend as HAProxy sees them now (``show servers state``)."""
    backend = _backend(config, environment)
    answer = command(config, f"show servers state {backend}")
    lines = answer.splitlines()
    if not lines or lines[0] != "1":  # the format version comes first
        raise ProxyError(f"HAProxy has no backend {backend} ({answer.strip()}); is its configuration current?")
    states = []
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight ... srv_port (18)
        states.append(
            ServerState(
                slot=fields[3],
                address=fields[4],
                port=int(fields[18]),
                weight=int(fields[7]),
                operational=_OPERATIONAL.get(int(fields[5]), fields[5]),
                maintenance=bool(int(fields[6]) & _MAINTENANCE),
            )
        )
    return states


def _backend(config: ProxyConfig, environment: str) -> str:
    if environment not in config.environments:
        raise ProxyError(f"unknown environment {environment!r}; configured: {sorted(config.environments)}")
    return f"be_{environment}"


@contextmanager
def _locked(config: ProxyConfig) -> Iterator[None]:
    """One change at a time per HAProxy: a (re)start, or a traffic move (slot choice reads, then writes)."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with (config.state_dir / "traffic.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _apply(config: ProxyConfig, commands: list[str]) -> None:
    if commands:
        answer = command(config, ";".join(commands))
        errors = [
            line
            for line in answer.splitlines()
            if line and not line.startswith(("IP changed", "no need to change", "port changed"))
        ]
        if errors:
            raise ProxyError(f"HAProxy refused {commands}: {' / '.join(errors)}")


def _slot_for(instance: Instance, states: list[ServerState], commands: list[str], backend: str) -> str:
    """The slot holding ``instance``'s address, or a free slot that gets it.

    Filling a free slot appends its commands to ``commands`` and removes it from ``states``, so
    the next instance of the same call gets another one.
    """
    for state in states:
        if (state.address, state.port) == (instance.host, instance.port) and not state.maintenance:
            return state.slot
    free = next((state for state in states if state.maintenance), None)
    if free is None:
        raise ProxyError(f"every slot of {backend} is in use; detach an old instance first")
    states.remove(free)
    server = f"{backend}/{free.slot}"
    # Maintenance → ready with weight 0, health forced up (the target checked /readyz already).
    commands += [
        f"set server {server} weight 0",
        f"set server {server} addr {instance.host} port {instance.port}",
        f"set server {server} state ready",
        f"set server {server} health up",
    ]
    return free.slot


def set_traffic(config: ProxyConfig, environment: str,
                weights: Mapping[Instance, int] | Mapping[str, int]) -> list[ServerState]:
    """Give each instance (or slot name) its weight; every other slot of the environment gets 0.

    Weights are relative (e.g. {stable: 90, canary: 10}). New weights are raised before old ones
    are lowered, in one message to HAProxy, so some server can always take the next request.
    Slots set to 0 stay ready (the previous release stays warm for a rollback). Returns the
    state after the change, checked against what was asked.
    """
    backend = _backend(config, environment)
    for weight in weights.values():
        if not 0 <= weight <= MAX_WEIGHT:
            raise ProxyError(f"weights must be between 0 and {MAX_WEIGHT}, got {weight}")
    with _locked(config):
        before = servers(config, environment)
        current = {state.slot: state.weight for state in before}
        prepare: list[str] = []
        wanted = {}
        for key, weight in weights.items():
            slot = key if isinstance(key, str) else _slot_for(key, before, prepare, backend)
            wanted[slot] = weight
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            raise ProxyError(f"{backend} has no slots {unknown}")
        down = [
            f"{state.slot} ({state.address}:{state.port}, {state.operational})"
            for state in before
            if wanted.get(state.slot, 0) > 0 and (state.maintenance or state.operational != "up")
        ]
        if down:
            raise ProxyError(f"{backend}: HAProxy's health checks say {down} cannot take traffic")
        wanted.update({slot: 0 for slot, weight in current.items() if slot not in wanted and weight})
        raises = [f"set server {backend}/{slot} weight {w}" for slot, w in wanted.items() if w > current[slot]]
        lowers = [f"set server {backend}/{slot} weight {w}" for slot, w in wanted.items() if w < current[slot]]
        _apply(config, prepare)
        _apply(config, raises + lowers)
        after = servers(config, environment)
    wrong = [state.slot for state in after if state.slot in wanted and state.weight != wanted[state.slot]]
    if wrong:
        raise ProxyError(f"HAProxy did not apply the weights of {wrong}: {after}")
    return after


def detach(config: ProxyConfig, environment: str, instance: Instance) -> None:
    """Take an instance out of its environment: weight 0, then maintenance (its slot is free again).

    Call it before stopping the instance; requests already sent to it still complete.
    """
    backend = _backend(config, environment)
    with _locked(config):
        for state in servers(config, environment):
            if (state.address, state.port) == (instance.host, instance.port) and not state.maintenance:
                server = f"{backend}/{state.slot}"
                _apply(config, [f"set server {server} weight 0", f"set server {server} state maint"])
