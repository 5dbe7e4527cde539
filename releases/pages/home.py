"""The home page: what is live in each environment, what waits for me, recent releases and failures."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from releases.models import Environment
from releases.models.pipeline import ReleaseStatus
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import stamp

RECENT = 15
FAILURES = 5


@viewer_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/home.html", {
        "environments": queries.live_deployments(Environment.objects.all()),
        "waiting": queries.waiting_for(request.user),
        "running": queries.RELEASE_ROWS.filter(status__in=[ReleaseStatus.PENDING, ReleaseStatus.RUNNING,
                                                           ReleaseStatus.SHIPPING]).count(),
        "recent": stamp(queries.RELEASE_ROWS[:RECENT], "created_at"),
        "failures": stamp(queries.RELEASE_ROWS.filter(status=ReleaseStatus.FAILED)[:FAILURES], "updated_at"),
    })
