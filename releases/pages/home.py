"""The home page: what is live in each environment, what waits for me, recent releases and failures."""

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from releases.models import Release
from releases.models.pipeline import ReleaseStatus
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import stamp
from slipway.prepared import Prepared

RECENT = 15
FAILURES = 5


@Prepared
def running() -> QuerySet[Release]:
    return Release.objects.filter(status__in=[ReleaseStatus.PENDING, ReleaseStatus.RUNNING, ReleaseStatus.SHIPPING])


@Prepared
def recent() -> QuerySet[Release]:
    return queries.RELEASE_ROWS[:RECENT]


@Prepared
def failures() -> QuerySet[Release]:
    return queries.RELEASE_ROWS.filter(status=ReleaseStatus.FAILED)[:FAILURES]


@viewer_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/home.html", {
        "environments": queries.live_deployments(),
        "waiting": queries.waiting_for(request.user),
        "running": running.count(),
        "recent": stamp(recent.list(), "created_at"),
        "failures": stamp(failures.list(), "updated_at"),
    })
