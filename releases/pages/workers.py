"""/workers/: every worker, what it has and what it runs now; the table refreshes itself (htmx)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from fleet.presence import gone_after, worker_rows
from releases.pages.access import viewer_required

POLL_SECONDS = 5


def _context() -> dict:
    return {"rows": worker_rows(), "poll_seconds": POLL_SECONDS, "gone_after_s": int(gone_after().total_seconds())}


@viewer_required
def worker_list(request: HttpRequest) -> HttpResponse:
    return render(request, "fleet/workers.html", _context())


@viewer_required
def worker_table(request: HttpRequest) -> HttpResponse:
    return render(request, "fleet/_workers_table.html", _context())
