"""Drive HAProxy: one stable frontend per environment, one backend per model, all through the runtime API.

A request reaches a model by its name on the path, ``/v2/models/<model>/...`` (passed on unchanged).
Each environment has a pool of pre-declared backends (``be_<env>_1`` .. ``be_<env>_N``), each with
server slots (``slot1`` .. ``slotM``) in maintenance until used, and a map file (model → backend)
consulted per request (``map`` converter). Giving a model its backend is ``add map`` over the admin
socket, removing it ``del map``, and moving a model's traffic changes the weights of its backend's
slots only: HAProxy 2.6 applies all three to the next request without a reload, so no connection is
closed, no request fails and no other model is touched. The map file is rewritten after each change,
so a reload or restart finds the same routes.
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
    slots: int = 8  # instances per model: stable, canary, warm and stopping releases
    backends: int = 32  # models per environment
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

    def model_endpoint(self, environment: str, model: str) -> str:
        return f"{self.endpoint(environment)}/v2/models/{model}"

    def map_path(self, environment: str) -> Path:
        return self.state_dir / f"models-{environment}.map"

    def backend_names(self, environment: str) -> list[str]:
        return [f"be_{environment}_{n}" for n in range(1, self.backends + 1)]


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

    backend = template("backend.cfg.tmpl")
    environments = "".join(
        template("environment.cfg.tmpl").substitute(
            name=name, port=port, bind_host=config.bind_host, map_file=config.map_path(name),
            backends="\n".join(backend.substitute(backend=b, slots=config.slots) for b in config.backend_names(name)),
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
        for environment in config.environments:
            if not config.map_path(environment).exists():
                config.map_path(environment).write_text("")
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


def routes(config: ProxyConfig, environment: str) -> dict[str, str]:
    """Model → backend, as HAProxy routes the environment's requests now (``show map``)."""
    _check_environment(config, environment)
    return _parse_routes(command(config, f"show map {config.map_path(environment)}"), environment)


def _parse_routes(answer: str, environment: str) -> dict[str, str]:
    found = {}
    for line in answer.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].startswith("0x"):
            found[fields[1]] = fields[2]
        elif line.strip():
            raise ProxyError(f"HAProxy has no map of {environment}'s models ({answer.strip()}); "
                             "is its configuration current?")
    return found


def _routes_and_slots(config: ProxyConfig, environment: str, model: str) -> tuple[dict[str, str], list[ServerState]]:
    """HAProxy's routes of the environment and the slots of the model's backend ([] when it has none yet).

    The map file (kept equal to HAProxy's map) names the backend to ask about, so both answers come in
    one exchange with HAProxy; HAProxy's own map has the last word, and a second exchange follows if
    it disagrees with the file.
    """
    _check_environment(config, environment)
    guess = _map_file(config, environment).get(model)
    if guess is None:
        table = routes(config, environment)
    else:
        answer = command(config, f"show map {config.map_path(environment)};show servers state {guess}")
        # The servers state begins with its format version on a line of its own; no map line is one.
        map_part, _, servers_part = ("\n" + answer).partition("\n1\n")
        table = _parse_routes(map_part, environment)
        if table.get(model) == guess:
            return table, _parse_servers("1\n" + servers_part, guess)
    backend = table.get(model)
    return table, ([] if backend is None else _backend_servers(config, backend))


def _map_file(config: ProxyConfig, environment: str) -> dict[str, str]:
    try:
        text = config.map_path(environment).read_text()
    except FileNotFoundError:
        return {}
    return {fields[0]: fields[1] for fields in (line.split() for line in text.splitlines()) if len(fields) == 2}


def servers(config: ProxyConfig, environment: str, model: str) -> list[ServerState]:
    """The slots of a model's backend in an environment as HAProxy sees them now; [] if it has none."""
    backend = routes(config, environment).get(model)
    return [] if backend is None else _backend_servers(config, backend)


def _backend_servers(config: ProxyConfig, backend: str) -> list[ServerState]:
    return _parse_servers(command(config, f"show servers state {backend}"), backend)


def _parse_servers(answer: str, backend: str) -> list[ServerState]:
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


def _check_environment(config: ProxyConfig, environment: str) -> None:
    if environment not in config.environments:
        raise ProxyError(f"unknown environment {environment!r}; configured: {sorted(config.environments)}")


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


def _write_map(config: ProxyConfig, environment: str, table: Mapping[str, str]) -> None:
    """Keep the map file equal to HAProxy's map, so a reload or a restart routes the same way."""
    path = config.map_path(environment)
    temporary = path.with_suffix(".map.new")
    temporary.write_text("".join(f"{model} {backend}\n" for model, backend in sorted(table.items())))
    temporary.replace(path)


def _check_model(model: str) -> None:
    if not model or any(c.isspace() or c in "/#;\\" for c in model):
        raise ProxyError(f"{model!r} cannot be routed: a model name has no spaces, slashes, '#', ';' or backslashes")


def set_traffic(
    config: ProxyConfig, environment: str, model: str, weights: Mapping[Instance, int] | Mapping[str, int]
) -> list[ServerState]:
    """Give each of a model's instances (or slot names) its weight; every other slot of the model gets 0.

    A model without a backend yet gets a free one of the environment's pool, and its route is added
    (``add map``) only once its slots are ready, so its first request finds a server. Weights are
    relative (e.g. {stable: 90, canary: 10}). New weights are raised before old ones are lowered, in
    one message to HAProxy, so some server can always take the next request. Slots set to 0 stay
    ready (the previous release stays warm for a rollback). Returns the model's slots after the
    change, checked against what was asked. Other models' backends are never touched.
    """
    _check_environment(config, environment)
    _check_model(model)
    for weight in weights.values():
        if not 0 <= weight <= MAX_WEIGHT:
            raise ProxyError(f"weights must be between 0 and {MAX_WEIGHT}, got {weight}")
    with _locked(config):
        table, before = _routes_and_slots(config, environment, model)
        new_route = model not in table
        taken = set(table.values())
        backend = table.get(model) or next((b for b in config.backend_names(environment) if b not in taken), "")
        if not backend:
            raise ProxyError(f"all {config.backends} model backends of {environment} are in use; "
                             "remove a model's route or raise SLIPWAY_PROXY_BACKENDS")
        if new_route:
            before = _backend_servers(config, backend)
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
        if new_route:
            _apply(config, [f"add map {config.map_path(environment)} {model} {backend}"])
            _write_map(config, environment, table | {model: backend})
        after = _backend_servers(config, backend)
    wrong = [state.slot for state in after if state.slot in wanted and state.weight != wanted[state.slot]]
    if wrong:
        raise ProxyError(f"HAProxy did not apply the weights of {wrong}: {after}")
    return after


def detach(config: ProxyConfig, environment: str, model: str, instance: Instance) -> None:
    """Take one of a model's instances out: weight 0, then maintenance (its slot is free again).

    Call it before stopping the instance; requests already sent to it still complete.
    """
    with _locked(config):
        backend = routes(config, environment).get(model)
        if backend is None:
            return
        for state in _backend_servers(config, backend):
            if (state.address, state.port) == (instance.host, instance.port) and not state.maintenance:
                server = f"{backend}/{state.slot}"
                _apply(config, [f"set server {server} weight 0", f"set server {server} state maint"])


def remove_route(config: ProxyConfig, environment: str, model: str) -> None:
    """Stop routing a model: its requests get the proxy's 404 from now on and its backend is free again."""
    with _locked(config):
        table = routes(config, environment)
        backend = table.pop(model, None)
        if backend is None:
            return
        _apply(config, [f"del map {config.map_path(environment)} {model}"])
        _write_map(config, environment, table)
        for state in _backend_servers(config, backend):
            if not state.maintenance:
                server = f"{backend}/{state.slot}"
                _apply(config, [f"set server {server} weight 0", f"set server {server} state maint"])
