"""Run Slipway embedded — web and a real Celery worker — with a demo build flowing to its gate."""

import os
import secrets
import signal
import subprocess
import sys
import time

import requests
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand

from releases.models import ApiToken, Model

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
    from workers.demo_model import digits_eval_npz, digits_model

    response = requests.post(
        f"{base_url}/api/v1/builds/", headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "demo-1"},
        data={"model": "digits", "version": "1.0.0", "task": "classification", "git_commit": "d1e2a3d4b5e6f7",
              "metadata": '{"dataset": "scikit-learn digits", "trainer": "demo"}'},
        files={"artifact": ("digits.onnx", digits_model().onnx_bytes),
               "eval_data": ("digits-eval.npz", digits_eval_npz())},
        timeout=60)
    response.raise_for_status()
    return response.json()["release"]["id"]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the web server exited with code {proc.returncode}")
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"the web server did not answer at {url} within {timeout:.0f} s")


class Command(BaseCommand):
    help = "Run Slipway embedded (web + worker) with a demo model flowing through the pipeline."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, host: str, port: int, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        logins = demo_logins()
        token = demo_token()
        env = os.environ | {"DJANGO_SETTINGS_MODULE": "slipway.settings"}
        base_url = f"http://{host}:{port}"
        children = [
            subprocess.Popen([sys.executable, "-m", "celery", "-A", "slipway", "worker", "-Q", "cpu,gpu,deploy",
                              "-c", "1", "-n", "demo-worker@%h", "--loglevel", "WARNING", "--beat",
                              "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")], env=env),
            subprocess.Popen([sys.executable, "-m", "gunicorn", "slipway.wsgi", "-b", f"{host}:{port}",
                              "-w", "2", "--threads", "4", "--access-logfile", "-"], env=env),
        ]
        try:
            wait_until_up(f"{base_url}/login/", children[1])
            if not Model.objects.filter(name="digits").exists():
                release_id = post_demo_build(base_url, token)
                self.stdout.write(f"Posted the demo build: {base_url}/releases/{release_id}/")
            self.stdout.write(self.style.SUCCESS(f"\nSlipway is running at {base_url}/"))
            self.stdout.write("Logins (demo only; kept in " + str(settings.DATA_DIR / "demo-logins.txt") + "):")
            for name, password in logins.items():
                self.stdout.write(f"  {name:7} {password:14} ({', '.join(DEMO_USERS[name])})")
            self.stdout.write(f"CI token (builds:write, releases:read): {token}")
            self.stdout.write("Press Ctrl-C to stop.")
            while all(c.poll() is None for c in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
