"""Workers write their own rows: at start (what they have), every heartbeat (still here), around each
task (what they run), at shutdown. The /workers/ page and the stage routing read them (fleet.presence)."""

from __future__ import annotations

import os
import threading

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from fleet import inventory
from fleet.models import WorkerNode


def announce(name: str, queues: list[str], concurrency: int, cuda_devices: list[dict]) -> WorkerNode:
    now = timezone.now()
    node, _ = WorkerNode.objects.update_or_create(name=name, defaults={
        "hostname": name.partition("@")[2] or name, "queues": sorted(queues), "concurrency": concurrency,
        "cpu_count": os.cpu_count() or 0, "memory_bytes": inventory.memory_bytes(),
        "cuda_devices": cuda_devices, "version": inventory.slipway_version(), "pid": os.getpid(),
        "started_at": now, "last_seen_at": now, "stopped_at": None, "running": []})
    return node


def seen(name: str) -> None:
    WorkerNode.objects.filter(name=name).update(last_seen_at=timezone.now())


def task_started(name: str, task_id: str, kwargs: dict) -> None:
    entry = {"task_id": task_id, "release_id": kwargs.get("release_id"), "stage": kwargs.get("stage", ""),
             "since": timezone.now().isoformat()}
    with transaction.atomic():
        node = WorkerNode.objects.select_for_update().filter(name=name).first()
        if node is not None:
            node.running = [*node.running, entry]
            node.last_seen_at = timezone.now()
            node.save(update_fields=["running", "last_seen_at"])


def task_finished(name: str, task_id: str) -> None:
    with transaction.atomic():
        node = WorkerNode.objects.select_for_update().filter(name=name).first()
        if node is not None:
            node.running = [entry for entry in node.running if entry["task_id"] != task_id]
            node.last_seen_at = timezone.now()
            node.save(update_fields=["running", "last_seen_at"])


def stopped(name: str) -> None:
    WorkerNode.objects.filter(name=name).update(stopped_at=timezone.now(), running=[])


class Heartbeat(threading.Thread):
    """Marks the worker as seen every SLIPWAY_WORKER_HEARTBEAT_S, from the worker's main process."""

    def __init__(self, name: str) -> None:
        super().__init__(name="fleet-heartbeat", daemon=True)
        self.node, self.halt = name, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(settings.SLIPWAY_WORKER_HEARTBEAT_S):
            close_old_connections()
            seen(self.node)
        close_old_connections()
