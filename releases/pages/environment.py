"""Environments: what serves now at what share, live serving charts, the history of traffic moves,
what was live at a given moment, and the rollback button."""

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from releases import deploys
from releases.approvals import NotAllowed
from releases.models import Deployment, Environment, TrafficChange
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import lasted, moment
from releases.roles import AnyUser, may
from releases.statemachine import TransitionError
from shipping.proxy import ProxyError

HISTORY_PER_PAGE = 20
POLL_SECONDS = 5


@viewer_required
def environment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/environment_list.html",
                  {"environments": queries.live_deployments(Environment.objects.all())})


def why_no_rollback(user: AnyUser, environment: Environment, active: Deployment | None,
                    target: Deployment | None) -> str | None:
    """Why this user cannot roll this environment back now, or None if they can."""
    if not may(user, "rollback"):
        return "only on-call engineers, deployers and admins may roll back"
    if active is None:
        return f"nothing serves in {environment.name} now"
    if target is None:
        return f"no earlier release is kept warm in {environment.name} to go back to"
    return None


def serving_context(request: HttpRequest, environment: Environment) -> dict:
    """The live part of the page: deployments, the rollback button and the serving charts."""
    deployments: list = list(environment.deployments.exclude(role=Deployment.Role.STOPPED)  # given serving_for below
                             .select_related("release__version__model")
                             .order_by("-traffic_percent", "-updated_at", "-id"))
    active = next((d for d in deployments if d.role == Deployment.Role.ACTIVE), None)
    target = deploys.rollback_target(environment)
    shares = {d.release_id: d.traffic_percent for d in [*deployments, *([target] if target else [])]}
    since = queries.serving_since(environment.traffic_changes.all(), shares)
    for d in deployments:
        d.serving_for = lasted(*since.get(d.release_id, (None, False)))
    return {
        "environment": environment,
        "deployments": deployments,
        "active": active,
        "target": target,
        "target_warm_for": lasted(*since.get(target.release_id, (None, False))) if target else None,
        "cannot_roll_back": why_no_rollback(request.user, environment, active, target),
        "series": queries.serving_series(environment),
        "time_zone": settings.TIME_ZONE,
        "live": any(d.traffic_percent for d in deployments),
        "poll_seconds": POLL_SECONDS,
    }


def parse_moment(raw: str) -> datetime:
    """A moment typed into the form (ISO 8601, e.g. 2026-03-01T03:15), in the site's time zone when
    it names none. Raises ValueError with what to type instead."""
    try:
        at = parse_datetime(raw)
    except ValueError:
        at = None
    if at is None:
        raise ValueError(f"“{raw}” is not a date and time; use the form YYYY-MM-DDTHH:MM, e.g. 2026-03-01T03:15")
    return timezone.make_aware(at) if timezone.is_naive(at) else at


def live_at_answer(environment: Environment, raw: str) -> dict:
    """What served at the moment `raw`, from the latest traffic change at or before it."""
    try:
        at = parse_moment(raw)
    except ValueError as exc:
        return {"raw": raw, "error": str(exc)}
    change, releases = deploys.live_at(environment, at)
    shares = change.shares if change else {}
    return {"raw": raw, "at": at, "when": moment(at), "change": change, "since": moment(change.at) if change else None,
            "rows": [(release, shares[str(release.pk)]) for release in releases]}


def history_rows(changes: list[TrafficChange]) -> list[tuple[TrafficChange, list[tuple[str, int]]]]:
    """Each change with its shares as (release label, percent), largest first."""
    labels = queries.share_labels(changes)
    return [(change, sorted(((labels.get(pk, f"#{pk}"), pct) for pk, pct in change.shares.items() if pct),
                            key=lambda row: -row[1])) for change in changes]


@viewer_required
def environment_detail(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    page = queries.paginate(request, environment.traffic_changes.select_related("actor"), HISTORY_PER_PAGE,
                            "history", moments=("at",))
    context = serving_context(request, environment)
    raw = request.GET.get("at", "").strip()
    context.update({"history": page, "history_rows": history_rows(list(page.object_list)),
                    "live_at": live_at_answer(environment, raw) if raw else None})
    return render(request, "releases/environment_detail.html", context)


@viewer_required
def environment_live(request: HttpRequest, name: str) -> HttpResponse:
    """The serving part of the environment page, for htmx to swap in."""
    environment = get_object_or_404(Environment, name=name)
    return render(request, "releases/_environment_live.html", serving_context(request, environment))


@viewer_required
@require_POST
def rollback(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    try:
        expected = int(request.POST["expected_release"])
    except (KeyError, ValueError):
        expected = None
    try:
        change = deploys.rollback(environment.name, request.user, request.POST.get("reason", ""),
                                  expected_release_id=expected)
    except (NotAllowed, TransitionError, ValueError) as exc:
        messages.error(request, f"Not rolled back: {exc}.")
    except ProxyError as exc:
        messages.error(request, f"Not rolled back: the proxy refused ({exc}); what served before still serves.")
    else:
        serving = ", ".join(f"{label} at {pct}%" for label, pct in history_rows([change])[0][1])
        messages.success(request, f"Rolled back {environment.name}: {serving or 'nothing'} serves now.")
    return redirect("environment", name=environment.name)
