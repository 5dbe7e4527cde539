"""Real worker processes: one on the cpu and deploy queues, one on the gpu queue. While the gpu worker is
there and has announced a CUDA device (CI has no GPU: the test writes the device into its announcement, so
what runs is the CPU fallback), compression and evaluation go to it; once it is gone they go to the cpu
worker, and their logs say why."""

import signal

import pytest

from fleet.models import WorkerNode
from fleet.presence import gpu_worker
from tests.conftest import build_form, token_client, wait_for_status
from tests.fleet.test_workers import FAST, wait_for
from tests.workerproc import session_worker_off_the_queues, start_worker, stop_worker, wait_for_worker

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_520_809_984}


def routes(release_id: int) -> dict[str, tuple[str, str, str]]:
    """Each stage that ran: its queue, its device and the first line of its log without its time."""
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=180)
    assert release.status == "awaiting_approval", release.failure_reason
    return {s.name: (s.queue, s.device, s.log.partition("\n")[0][9:])
            for s in release.stages.filter(status="succeeded")}


def test_accelerated_stages_follow_the_gpu_worker_while_it_is_there(celery_worker, users, settings, tmp_path):
    settings.SLIPWAY_WORKER_HEARTBEAT_S = 1  # as the workers' FAST: gone after 3 s
    ci = token_client(users["ci"])
    with session_worker_off_the_queues(celery_worker):
        cpu = start_worker("route-cpu", "cpu,deploy", tmp_path / "cpu.log", FAST)
        gpu = start_worker("route-gpu", "gpu", tmp_path / "gpu.log", FAST)
        try:
            wait_for_worker("route-cpu")
            wait_for_worker("route-gpu")
            node = wait_for(lambda: WorkerNode.objects.filter(name__startswith="route-gpu@").first())
            WorkerNode.objects.filter(pk=node.pk).update(cuda_devices=[H100])
            first = ci.post("/api/v1/builds/", build_form(version="1.0.0"), format="multipart").json()
            ran = routes(first["release"]["id"])
            assert {name: ran[name][:2] for name in ("validate", "convert", "compress", "evaluate")} == {
                "validate": ("cpu", "cpu"), "convert": ("cpu", "cpu"), "compress": ("gpu", "cpu"),
                "evaluate": ("gpu", "cpu")}
            assert ran["compress"][2].startswith(f"GPU worker {node.name} (CUDA devices: 1) seen ")
            assert ran["evaluate"][2].endswith(" s ago: on the gpu queue")

            gpu.send_signal(signal.SIGKILL)  # its heartbeats stop; it is gone three heartbeats later
            gpu.wait()
            wait_for(lambda: gpu_worker("gpu") is None, timeout=15, every=0.2)
            second = ci.post("/api/v1/builds/", build_form(version="1.0.1"), format="multipart").json()
            ran = routes(second["release"]["id"])
        finally:
            if gpu.poll() is None:
                stop_worker(gpu)
            stop_worker(cpu)
    assert {name: ran[name] for name in ("compress", "evaluate")} == {
        "compress": ("cpu", "cpu", "no GPU worker seen in the last 3 s: running on CPU"),
        "evaluate": ("cpu", "cpu", "no GPU worker seen in the last 3 s: running on CPU")}
