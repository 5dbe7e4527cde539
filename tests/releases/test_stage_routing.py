"""Stages that may run on a GPU (compress, evaluate) go to the gpu queue while a worker consuming it has
announced a CUDA device and is present, else to the cpu queue, and their log says which and why. A stage
left to a GPU worker that went away is sent to the CPU by the sweeper, whether that worker had taken it
(heartbeat timeout) or not (resend). Real announcement rows, real broker (the test Redis database):
each message lands on the queue its stage names."""

import base64
import json
import re
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from fleet.models import WorkerNode
from releases import pipeline
from releases.actors import Actor
from releases.models import AuditEvent, StageRun
from releases.statemachine import transition_stage
from releases.sweeper import sweep
from tests.conftest import build_form, token_client

pytestmark = pytest.mark.real_broker
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_520_809_984}
NO_GPU = "no GPU worker seen in the last 45 s: running on CPU"  # three heartbeats of 15 s
STAMPED = r"\d\d:\d\d:\d\d "


def announce(name: str, queues: list[str], seen_s_ago: float, cuda_devices: list[dict] | None = None,
             stopped: bool = False) -> WorkerNode:
    """A worker's row as fleet.announce writes it, last heard from `seen_s_ago` seconds ago."""
    now = timezone.now()
    return WorkerNode.objects.create(name=name, hostname=name.partition("@")[2], queues=queues, cpu_count=16,
                                     cuda_devices=cuda_devices or [], started_at=now - timedelta(hours=1),
                                     last_seen_at=now - timedelta(seconds=seen_s_ago),
                                     stopped_at=now if stopped else None)


def on_the_broker() -> dict[str, list[str]]:
    """The stages waiting on the cpu and gpu queues of the test broker."""
    broker = redis.Redis.from_url(settings.REDIS_URL)
    return {queue: [json.loads(base64.b64decode(json.loads(m)["body"]))[1]["stage"]
                    for m in broker.lrange(queue, 0, -1)] for queue in ("cpu", "gpu")}


@pytest.fixture
def converted(users, settings, tmp_path) -> int:
    """A release whose convert stage succeeded, the broker's cpu and gpu queues empty."""
    settings.ARTIFACT_DIR = tmp_path
    settings.SLIPWAY_WORKER_HEARTBEAT_S = 15
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    release_id = response.json()["release"]["id"]
    StageRun.objects.filter(release_id=release_id, name__in=["validate", "convert"]).update(status="succeeded")
    redis.Redis.from_url(settings.REDIS_URL).delete("cpu", "gpu")
    return release_id


def queue_compress(release_id: int, capture) -> StageRun:
    with capture(execute=True):
        pipeline.advance(release_id, Actor.system("test"))
    return StageRun.objects.get(release_id=release_id, name="compress")


def test_without_a_present_gpu_worker_compress_goes_to_the_cpu_queue_and_says_why(
        converted, django_capture_on_commit_callbacks):
    announce("gpu@box-1", ["gpu"], 60, [H100])  # gone: not heard from for four heartbeats
    announce("gpu@box-2", ["gpu"], 1, [H100], stopped=True)
    announce("gpu@box-3", ["gpu"], 1)  # on the gpu queue, without CUDA
    announce("cpu@box-4", ["cpu"], 1, [H100])  # CUDA, but not on the gpu queue
    stage = queue_compress(converted, django_capture_on_commit_callbacks)
    assert (stage.status, stage.queue, stage.step) == ("queued", "cpu", NO_GPU)
    assert re.fullmatch(f"{STAMPED}{NO_GPU}\n", stage.log)
    assert on_the_broker() == {"cpu": ["compress"], "gpu": []}
    queued = AuditEvent.objects.get(release_id=converted, action="stage.queue", subject="stage compress")
    assert queued.after == {"status": "queued", "attempt": 0, "queue": "cpu", "step": NO_GPU}


def test_a_present_gpu_worker_gets_compress_and_the_stages_that_need_no_gpu_stay(
        converted, django_capture_on_commit_callbacks):
    announce("gpu@box-2", ["gpu"], 2, [H100])
    stage = queue_compress(converted, django_capture_on_commit_callbacks)
    assert (stage.queue, stage.log[9:]) == ("gpu", f"{stage.step}\n")
    assert re.fullmatch(r"GPU worker gpu@box-2 \(CUDA devices: 1\) seen [23] s ago: on the gpu queue", stage.step)
    assert on_the_broker() == {"cpu": [], "gpu": ["compress"]}
    assert [pipeline.route(name) for name in ("convert", "gate", "package")] == [
        ("cpu", ""), ("cpu", ""), ("deploy", "")]


def test_the_setting_can_pin_the_queue(converted, settings):
    announce("gpu@box-2", ["gpu"], 2, [H100])
    settings.SLIPWAY_ACCELERATED_QUEUE = "cpu"
    assert pipeline.route("evaluate") == ("cpu", "on the cpu queue: SLIPWAY_ACCELERATED_QUEUE=cpu")
    WorkerNode.objects.all().delete()
    settings.SLIPWAY_ACCELERATED_QUEUE = "gpu"
    assert pipeline.route("evaluate") == ("gpu", "on the gpu queue: SLIPWAY_ACCELERATED_QUEUE=gpu")


def test_a_gpu_worker_that_dies_running_a_stage_leaves_its_retry_to_the_cpu(
        converted, django_capture_on_commit_callbacks):
    gpu = announce("gpu@box-2", ["gpu"], 1, [H100])
    stage = queue_compress(converted, django_capture_on_commit_callbacks)
    transition_stage(stage.pk, "start", actor=Actor.worker(), worker_host="box-2", device="cuda:0")
    redis.Redis.from_url(settings.REDIS_URL).delete("gpu")  # the GPU worker took the message
    # It dies: neither the stage's heartbeat nor the worker's come any more.
    silent = timezone.now() - timedelta(seconds=settings.SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S + 30)
    StageRun.objects.filter(pk=stage.pk).update(heartbeat_at=silent)
    WorkerNode.objects.filter(pk=gpu.pk).update(last_seen_at=silent)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep() == {"resent": 0, "retried": 1, "failed": 0, "stops_resent": 0}
    stage.refresh_from_db()
    assert (stage.status, stage.attempt, stage.queue, stage.step) == ("queued", 1, "cpu", NO_GPU)
    first, retry = (line[9:] for line in stage.log.splitlines())
    assert (first.startswith("GPU worker gpu@box-2 (CUDA devices: 1) seen"), retry) == (True, NO_GPU)
    assert on_the_broker() == {"cpu": ["compress"], "gpu": []}


def test_a_stage_a_gone_gpu_worker_never_took_is_sent_to_the_cpu(converted, django_capture_on_commit_callbacks):
    gpu = announce("gpu@box-2", ["gpu"], 1, [H100])
    stage = queue_compress(converted, django_capture_on_commit_callbacks)
    assert sweep()["resent"] == 0  # queued just now
    before = timezone.now() - timedelta(seconds=settings.SLIPWAY_STAGE_RESEND_AFTER_S + 1)
    StageRun.objects.filter(pk=stage.pk).update(queued_at=before)
    WorkerNode.objects.filter(pk=gpu.pk).update(last_seen_at=before)
    assert sweep() == {"resent": 1, "retried": 0, "failed": 0, "stops_resent": 0}
    stage.refresh_from_db()
    assert (stage.status, stage.queue, stage.step, stage.log.splitlines()[1][9:]) == ("queued", "cpu", NO_GPU, NO_GPU)
    # The first message stays on the gpu queue: a worker that takes it later finds the stage settled or held.
    assert on_the_broker() == {"cpu": ["compress"], "gpu": ["compress"]}
    routed = AuditEvent.objects.get(release_id=converted, action="stage.route")
    assert (routed.actor_label, routed.before, routed.after, routed.reason) == (
        "sweeper", {"queue": "gpu"}, {"queue": "cpu"}, NO_GPU)
