"""Who is there: a worker not heard from for three heartbeats is gone (crashed, or its machine is). The
/workers/ page and the stage routing (releases.pipeline) read the fleet through these functions."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from fleet.models import WorkerNode


def gone_after() -> timedelta:
    return timedelta(seconds=3 * settings.SLIPWAY_WORKER_HEARTBEAT_S)


def worker_rows() -> list[dict]:
    """Workers that run first, then idle ones, then gone and stopped ones; each with its state."""
    cutoff = timezone.now() - gone_after()
    rows = []
    for node in WorkerNode.objects.all():
        state = "stopped" if node.stopped_at else "gone" if node.last_seen_at < cutoff else (
            "busy" if node.running else "idle")
        rows.append({"node": node, "state": state, "running": node.running if state == "busy" else [],
                     "gpu_memory_bytes": sum(d["memory_bytes"] for d in node.cuda_devices)})
    order = {"busy": 0, "idle": 1, "gone": 2, "stopped": 3}
    return sorted(rows, key=lambda row: (order[row["state"]], row["node"].name))


def gpu_worker(queue: str) -> WorkerNode | None:
    """The worker heard from last of those present that consume `queue` and announced a CUDA device;
    None when there is none. (Queues and devices are JSON lists: filtered here, not in SQL, which
    SQLite cannot do; a fleet is a few rows.)"""
    cutoff = timezone.now() - gone_after()
    present = WorkerNode.objects.filter(stopped_at=None, last_seen_at__gte=cutoff).order_by("-last_seen_at")
    return next((node for node in present if queue in node.queues and node.cuda_devices), None)
