"""/workers/: every worker, what it has and what it runs now; the table refreshes itself (htmx)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from fleet.announce import gone_after
from fleet.models import WorkerNode
from releases.pages.access import viewer_required

POLL_SECONDS = 5


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


def _context() -> dict:
    return {"rows": worker_rows(), "poll_seconds": POLL_SECONDS, "gone_after_s": int(gone_after().total_seconds())}


@viewer_required
def worker_list(request: HttpRequest) -> HttpResponse:
    return render(request, "fleet/workers.html", _context())


@viewer_required
def worker_table(request: HttpRequest) -> HttpResponse:
    return render(request, "fleet/_workers_table.html", _context())
