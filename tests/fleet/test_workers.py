"""Two real worker processes on different queues announce themselves; the cpu one is seen running a
build's stages while the deploy one stays idle; /workers/ shows both, then one gone and one stopped."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.test import Client

from fleet.models import WorkerNode
from fleet.presence import worker_rows
from releases.models import Model, ReleasePolicy
from tests.conftest import build_form, token_client, wait_for_status
from tests.workerproc import session_worker_off_the_queues, start_worker, stop_worker, wait_for_worker

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
FAST = {"SLIPWAY_WORKER_HEARTBEAT_S": "1"}



def driver_gpu_count() -> int:
    """GPUs the NVIDIA driver lists (nvidia-smi -L), 0 on a machine without the driver."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in listing.splitlines())

def states() -> dict[str, str]:
    """The states of this test's workers (the session's worker announces itself too)."""
    return {row["node"].name.partition("@")[0]: row["state"] for row in worker_rows()
            if row["node"].name.startswith("fleet-")}


def wait_for(predicate, timeout: float = 60, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s: {predicate}")


def test_workers_announce_what_they_have_and_run_and_go(celery_worker, users, settings, tmp_path):
    settings.SLIPWAY_WORKER_HEARTBEAT_S = 1
    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model, candidates=["int8-dynamic"])
    viewer = Client()
    viewer.force_login(users["victor"])
    with session_worker_off_the_queues(celery_worker):
        cpu = start_worker("fleet-cpu", "cpu", tmp_path / "cpu.log", FAST, concurrency=2)
        deploy = start_worker("fleet-deploy", "deploy", tmp_path / "deploy.log", FAST)
        try:
            wait_for_worker("fleet-cpu")
            wait_for_worker("fleet-deploy")
            nodes = {n.name.partition("@")[0]: n for n in WorkerNode.objects.filter(name__startswith="fleet-")}
            assert sorted(nodes) == ["fleet-cpu", "fleet-deploy"]
            assert (nodes["fleet-cpu"].queues, nodes["fleet-cpu"].concurrency) == (["cpu"], 2)
            assert (nodes["fleet-deploy"].queues, nodes["fleet-deploy"].concurrency) == (["deploy"], 1)
            assert nodes["fleet-cpu"].pid == cpu.pid and nodes["fleet-deploy"].pid == deploy.pid
            assert nodes["fleet-cpu"].cpu_count == os.cpu_count()
            assert nodes["fleet-cpu"].memory_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            # The driver's own count, not torch's (which the worker itself asks).
            assert len(nodes["fleet-cpu"].cuda_devices) == driver_gpu_count()

            response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
            release_id = response.json()["release"]["id"]
            running = wait_for(lambda: WorkerNode.objects.get(pk=nodes["fleet-cpu"].pk).running)
            assert running[0]["release_id"] == release_id
            assert running[0]["stage"] in {"validate", "convert", "compress", "evaluate", "gate"}
            # Stages take a fraction of a second each: the page is asked until it catches one running.
            link = f'href="/releases/{release_id}/">#{release_id}</a>'
            wait_for(lambda: link in viewer.get("/workers/table/").content.decode(), timeout=30, every=0.01)
            wait_for_status(release_id, "awaiting_approval", timeout=120)
            assert WorkerNode.objects.get(pk=nodes["fleet-deploy"].pk).running == []
            wait_for(lambda: WorkerNode.objects.get(pk=nodes["fleet-cpu"].pk).running == [])
            assert states() == {"fleet-cpu": "idle", "fleet-deploy": "idle"}
        finally:
            deploy.send_signal(signal.SIGKILL)  # a crash: no goodbye, its heartbeats just stop
            deploy.wait()
            stop_worker(cpu)
    wait_for(lambda: states()["fleet-deploy"] == "gone", timeout=10, every=0.2)
    assert states() == {"fleet-cpu": "stopped", "fleet-deploy": "gone"}
    page = viewer.get("/workers/").content.decode()
    assert re.findall(r'data-worker="(fleet-\w+)@[^"]*" data-state="(\w+)"', page) == [
        ("fleet-deploy", "gone"), ("fleet-cpu", "stopped")]


def test_compose_runs_one_task_at_a_time_on_its_gpu():
    spec = yaml.safe_load((Path(settings.BASE_DIR) / "compose.yaml").read_text())
    command = spec["services"]["worker-gpu"]["command"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert (command[command.index("-c") + 1], command[command.index("--prefetch-multiplier") + 1]) == ("1", "1")
    assert spec["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1
