"""Run Slipway embedded — its own Redis, web, a real Celery worker and beat, supervised — with a demo build
flowing to its gate. A child that dies is logged and started again; Ctrl-C or SIGTERM stops everything the
demo started, the model servers and HAProxy that the worker started included."""

import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import requests
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from releases.models import ApiToken, Model
from shipping.cleanup import stop_on_signals, stop_serving
from shipping.supervisor import Child, Supervisor

LOGS = settings.DATA_DIR / "logs"
DEMO_USERS = {"admin": ("admin",), "alice": ("approver",), "bob": ("approver",), "ci": ("deployer",),
              "oncall": ("on-call",)}


def demo_logins() -> dict[str, str]:
    """Create the demo users once, with random passwords kept in the data folder."""
    path = settings.DATA_DIR / "demo-logins.txt"
    known = dict(line.split(" ", 1) for line in path.read_text().splitlines()) if path.exists() else {}
    for name, groups in DEMO_USERS.items():
        if User.objects.filter(username=name).exists() and name in known:
            continue
        password = known.get(name) or secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username=name)
        user.set_password(password)
        user.is_staff = user.is_superuser = name == "admin"
        user.save()
        user.groups.set(Group.objects.filter(name__in=groups))
        known[name] = password
    path.write_text("".join(f"{k} {v}\n" for k, v in known.items()))
    path.chmod(0o600)
    return known


def demo_token() -> str:
    path = settings.DATA_DIR / "demo-ci-token"
    if path.exists():
        return path.read_text().strip()
    _, raw = ApiToken.issue(User.objects.get(username="ci"), "demo-ci", ["builds:write", "releases:read"])
    path.write_text(raw)
    path.chmod(0o600)
    return raw


def post_demo_build(base_url: str, token: str) -> int:
    from releases.management.demo_model import digits_eval_npz, digits_model

    response = requests.post(
        f"{base_url}/api/v1/builds/", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "demo-1"},
        data={"model": "digits", "version": "1.0.0", "task": "classification", "git_commit": "d1e2a3d4b5e6f7",
              "metadata": '{"dataset": "scikit-learn digits", "trainer": "demo"}'},
        files={"artifact": ("digits.onnx", digits_model().onnx_bytes),
               "eval_data": ("digits-eval.npz", digits_eval_npz())},
        timeout=60)
    response.raise_for_status()
    return response.json()["release"]["id"]


def write_demo_build() -> Path:
    """The demo build's files (the digits model and its evaluation data) in the data folder, for posting
    another version of it as CI would (`slipway push`, README); returns their folder."""
    from releases.management.demo_model import digits_eval_npz, digits_model

    folder = settings.DATA_DIR / "demo-build"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digits.onnx").write_bytes(digits_model().onnx_bytes)
    (folder / "digits-eval.npz").write_bytes(digits_eval_npz())
    return folder


def answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            requests.get(url, timeout=5)
        except requests.RequestException:
            return False
        return True
    return check


def redis_answers(socket_path: Path) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False
    return check


def embedded_redis() -> Child:
    """The embedded default's broker: a private redis-server on a unix socket in the data folder.

    Messages are appended to a file there (fsync every second), so a restart of the demo or of this
    server loses none that were written; what it does lose the sweeper sends again from the database."""
    socket_path = settings.EMBEDDED_REDIS_SOCKET
    if len(str(socket_path)) > 100:
        raise CommandError(f"the broker's socket path {socket_path} is too long for a unix socket "
                           "(over 100 characters): set a shorter SLIPWAY_DATA_DIR")
    if shutil.which("redis-server") is None:
        raise CommandError("redis-server is not installed: apt-get install -y redis-server "
                           "(or bash deploy/install-system-deps.sh demo), or set REDIS_URL")
    settings.BROKER_DIR.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
            "--dir", str(settings.BROKER_DIR), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", ""]
    return Child("redis", argv, log_path=LOGS / "redis.log", ready=redis_answers(socket_path))


def demo_children(host: str, port: int) -> list[Child]:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "slipway.settings"}
    celery = [sys.executable, "-m", "celery", "-A", "slipway"]
    children = [] if settings.REDIS_URL else [embedded_redis()]
    return [
        *children,
        Child("web", [sys.executable, "-m", "gunicorn", "slipway.wsgi", "-b", f"{host}:{port}", "-w", "2",
                      "--threads", "4", "--access-logfile", str(LOGS / "web-access.log"),
                      "--control-socket", str(settings.DATA_DIR / "gunicorn.ctl")],
              env=env, ready=answers(f"http://{host}:{port}/login/")),
        Child("worker", [*celery, "worker", "-Q", "cpu,gpu,deploy", "-c", "1", "-n", "demo-worker@%h",
                         "--loglevel", "WARNING"], env=env),
        Child("beat", [*celery, "beat", "--loglevel", "WARNING", "--schedule",
                       str(settings.DATA_DIR / "celerybeat-schedule")], env=env, log_path=LOGS / "beat.log"),
    ]


class Command(BaseCommand):
    help = "Run Slipway embedded (broker, web, worker, beat) with a demo model flowing through the pipeline."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, host: str, port: int, **options) -> None:
        logging.basicConfig(format="%(asctime)s demo: %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        logins = demo_logins()
        token = demo_token()
        base_url = f"http://{host}:{port}"
        supervisor = Supervisor(demo_children(host, port), status_path=settings.DATA_DIR / "demo-status.json")
        stop_on_signals()  # SIGTERM and SIGHUP stop the demo as Ctrl-C does
        try:
            supervisor.start()
            if not Model.objects.filter(name="digits").exists():
                release_id = post_demo_build(base_url, token)
                self.stdout.write(f"Posted the demo build: {base_url}/releases/{release_id}/")
            self.stdout.write(self.style.SUCCESS(f"\nSlipway is running at {base_url}/"))
            self.stdout.write("Logins (demo only; kept in " + str(settings.DATA_DIR / "demo-logins.txt") + "):")
            for name, password in logins.items():
                self.stdout.write(f"  {name:7} {password:14} ({', '.join(DEMO_USERS[name])})")
            self.stdout.write(f"CI token (builds:write, releases:read): {token}")
            build = write_demo_build()
            self.stdout.write(f"Logs: {LOGS}. To see a canary promote once a release serves in production, post "
                              f"another version of the demo build (its files are in {build}) and send traffic: "
                              "see README, \"See a canary promote\".")
            self.stdout.write("Press Ctrl-C to stop.")
            while True:
                supervisor.poll()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping...")
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C does not cut the cleanup short
            supervisor.stop()
            for what in stop_serving(settings.SLIPWAY_PROXY_DIR, settings.SLIPWAY_SERVING_DIR / "pids"):
                self.stdout.write(f"stopped {what}")
