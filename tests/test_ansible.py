"""deploy/ansible/ provisions a real host: a container of the local base image (slipway-base:bookworm),
reached through Ansible's docker connection. The playbook installs Slipway (a wheel of this checkout)
and its dependencies in a venv, writes the settings and the systemd units; a second run changes
nothing. The container has no systemd running: the units are checked by `systemd-analyze verify`
(a task of the playbook, inside the host) and the worker is started from its unit's ExecStart, as its
User, with its EnvironmentFile. It then takes a build from this test's broker to the approval gate.

Slow by nature (apt and a venv with torch on a bare host, ~3-5 min); the dependencies' wheels are
downloaded once and cached (tests/test_image.py's cache), served to the host over loopback."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from fleet.models import WorkerNode
from releases.models import Model, ReleasePolicy
from tests.conftest import build_form, token_client, wait_for_status, worker_database_url
from tests.s3server import s3_environment
from tests.test_image import wheel_server  # noqa: F401 - the fixture serving the cached wheels
from tests.test_packaging import packaged_sources
from tests.workerproc import session_worker_off_the_queues, wait_for_worker

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "deploy" / "ansible" / "site.yml"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def host() -> str:
    for tool in ("ansible-playbook", "docker"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: bash deploy/install-system-deps.sh test")
    if docker("image", "inspect", settings.SLIPWAY_BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"no {settings.SLIPWAY_BASE_IMAGE} image: make docker-images")
    name = f"slipway-ansible-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "host", settings.SLIPWAY_BASE_IMAGE, "sleep", "infinity")
    yield name
    docker("rm", "-f", name, check=False)


def slipway_wheel(into: Path) -> Path:
    source = into / "source"
    source.mkdir()
    packaged_sources(source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(into), str(source)], check=True, cwd=into)
    return next(into.glob("slipway-*.whl"))


def play(inventory: Path) -> str:
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(PLAYBOOK)], capture_output=True,
                            text=True, env=os.environ | {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                                                         "ANSIBLE_RETRY_FILES_ENABLED": "False"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if re.match(r"^\S+\s+: ok=", line))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def start_from_unit(host: str, unit: str) -> None:
    """What systemd would do for the unit: its ExecStart, as its User, in its WorkingDirectory, with its
    EnvironmentFile (systemd's `%%` written back as `%`)."""
    text = docker("exec", host, "cat", f"/etc/systemd/system/{unit}").stdout
    fields = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.M))
    command = fields["ExecStart"].replace("%%", "%")
    script = f"set -a; . {shlex.quote(fields['EnvironmentFile'])}; set +a; exec {command} >worker.log 2>&1"
    docker("exec", "-d", "--user", fields["User"], "--workdir", fields["WorkingDirectory"], host, "sh", "-c", script)


def test_the_playbook_provisions_a_worker_host_that_carries_a_build_to_the_gate(
        host, wheel_server, tmp_path, users, celery_worker, s3_store_settings, s3_endpoint):  # noqa: F811
    # The host shares nothing with this machine but PostgreSQL, Redis and the bucket (its own disk).
    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model, candidates=["int8-dynamic"])
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"slipway_workers": {"hosts": {host: {
        "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
        "slipway_wheel": str(slipway_wheel(tmp_path)),
        "slipway_pip_options": f"--no-index --find-links {wheel_server}",
        "slipway_worker_name": "ansible-worker", "slipway_worker_queues": ["cpu"], "slipway_worker_concurrency": 1,
        "slipway_beat": True,
        "slipway_settings": s3_environment(s3_endpoint, s3_store_settings) | {
            "DATABASE_URL": worker_database_url(), "REDIS_URL": settings.REDIS_URL,
            "SLIPWAY_SECRET_KEY": "ansible-test-secret-key-0123456789abcdef"},
    }}}}}}))
    first = recap(play(inventory))
    assert first["failed"] == 0 and first["changed"] > 0
    second = recap(play(inventory))
    assert (second["changed"], second["failed"]) == (0, 0), second  # idempotent

    units = docker("exec", host, "ls", "/etc/systemd/system").stdout.split()
    assert {"slipway-worker.service", "slipway-beat.service"} <= set(units)
    env = docker("exec", host, "cat", "/etc/slipway/slipway.env").stdout
    assert f"REDIS_URL={settings.REDIS_URL}" in env.splitlines()
    assert docker("exec", host, "stat", "-c", "%U %a", "/etc/slipway/slipway.env").stdout.split() == ["root", "640"]
    installed = docker("exec", host, "/opt/slipway/venv/bin/python", "-c",
                       "import json, slipway, torch; print(json.dumps([slipway.__file__, torch.__version__]))").stdout
    assert json.loads(installed)[0].startswith("/opt/slipway/venv/") and json.loads(installed)[1] == "2.13.0+cpu"

    with session_worker_off_the_queues(celery_worker):
        start_from_unit(host, "slipway-worker.service")
        try:
            wait_for_worker("ansible-worker", timeout=120)
        except AssertionError:
            log = docker("exec", host, "cat", "/var/lib/slipway/worker.log", check=False).stdout
            raise AssertionError(f"the provisioned worker did not start:\n{log[-3000:]}") from None
        response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
        release_id = response.json()["release"]["id"]
        release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=300)
        assert release.status == "awaiting_approval", [(s.name, s.status, s.error) for s in release.stages.all()]
    assert [(s.name, s.status) for s in release.stages.all()][:5] == [
        ("validate", "succeeded"), ("convert", "succeeded"), ("compress", "succeeded"),
        ("evaluate", "succeeded"), ("gate", "waiting")]
    node = WorkerNode.objects.get(name__startswith="ansible-worker@")
    assert node.queues == ["cpu"]
    log = docker("exec", host, "cat", "/var/lib/slipway/worker.log").stdout
    assert "workers.tasks" in log and "succeeded" in log
