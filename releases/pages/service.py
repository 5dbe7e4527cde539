"""One model's service in one environment: who serves, serving charts, canary, rollback, the history of
its traffic moves and what was live at a given moment."""

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from releases import canaries, deploys, drills
from releases.approvals import NotAllowed
from releases.models import Service, TrafficChange
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import moment
from releases.pages.environment import POLL_SECONDS, service_rows
from releases.statemachine import TransitionError
from shipping.proxy import ProxyError

HISTORY_PER_PAGE = 20


def _service(environment: str, model: str) -> Service:
    try:
        return deploys.service_of(environment, model)
    except deploys.NoService as exc:
        raise Http404(str(exc)) from None


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


def live_at_answer(service: Service, raw: str) -> dict:
    """What served at the moment `raw`, from the latest traffic change at or before it."""
    try:
        at = parse_moment(raw)
    except ValueError as exc:
        return {"raw": raw, "error": str(exc)}
    change, releases = deploys.live_at(service, at)
    shares = change.shares if change else {}
    return {"raw": raw, "at": at, "when": moment(at), "change": change, "since": moment(change.at) if change else None,
            "rows": [(release, shares[str(release.pk)]) for release in releases]}


def history_rows(changes: list[TrafficChange]) -> list[tuple[TrafficChange, list[tuple[str, int]]]]:
    """Each change with its shares as (release label, percent), largest first."""
    labels = queries.share_labels(changes)
    return [(change, sorted(((labels.get(pk, f"#{pk}"), pct) for pk, pct in change.shares.items() if pct),
                            key=lambda row: -row[1])) for change in changes]


def live_context(request: HttpRequest, service: Service) -> dict:
    row = service_rows(request.user, "pk", service.pk, how_long=True)[0]
    return {"row": row, "service": service, "environment": service.environment,
            "series": queries.serving_series(service), "time_zone": settings.TIME_ZONE, "poll_seconds": POLL_SECONDS,
            "drill": drills.last(service),
            "cannot_drill": drills.why_no_drill(request.user, service, deploys.Running(row.deployments))}


@viewer_required
def service_detail(request: HttpRequest, name: str, model: str) -> HttpResponse:
    service = _service(name, model)
    page = queries.paginate(request, service.traffic_changes.select_related("actor"), HISTORY_PER_PAGE,
                            "history", moments=("at",))
    context = live_context(request, service)
    raw = request.GET.get("at", "").strip()
    context.update({"history": page, "history_rows": history_rows(list(page.object_list)),
                    "live_at": live_at_answer(service, raw) if raw else None})
    return render(request, "releases/service_detail.html", context)


@viewer_required
def service_live(request: HttpRequest, name: str, model: str) -> HttpResponse:
    return render(request, "releases/_service_live.html", live_context(request, _service(name, model)))


def _back(request: HttpRequest, service: Service) -> HttpResponse:
    """Back where the button was: the environment page or the service's own."""
    if request.POST.get("next") == "environment":
        return redirect("environment", name=service.environment.name)
    return redirect("service", name=service.environment.name, model=service.model.name)


@viewer_required
@require_POST
def rollback(request: HttpRequest, name: str, model: str) -> HttpResponse:
    service = _service(name, model)
    try:
        expected = int(request.POST["expected_release"])
    except (KeyError, ValueError):
        expected = None
    try:
        change = deploys.rollback(name, model, request.user, request.POST.get("reason", ""),
                                  expected_release_id=expected)
    except (NotAllowed, TransitionError, ValueError) as exc:
        messages.error(request, f"{model} in {name} not rolled back: {exc}.")
    except ProxyError as exc:
        messages.error(request, f"{model} in {name} not rolled back: the proxy refused ({exc}); "
                                "what served before still serves.")
    else:
        serving = ", ".join(f"{label} at {pct}%" for label, pct in history_rows([change])[0][1])
        messages.success(request, f"Rolled back {model} in {name}: {serving or 'nothing'} serves now.")
    return _back(request, service)


@viewer_required
@require_POST
def canary_decision(request: HttpRequest, name: str, model: str) -> HttpResponse:
    service = _service(name, model)
    decision = request.POST.get("decision")
    if decision not in ("promote", "abort"):
        messages.error(request, "Choose promote or abort.")
        return _back(request, service)
    try:
        canaries.decide(name, model, request.user, promote=decision == "promote",
                        reason=request.POST.get("reason", ""))
    except (NotAllowed, TransitionError, ValueError) as exc:
        messages.error(request, f"The canary of {model} in {name} was not {decision}d: {exc}.")
    except ProxyError as exc:
        messages.error(request, f"The canary of {model} in {name} was not {decision}d: the proxy refused ({exc}).")
    else:
        messages.success(request, f"The canary of {model} in {name} was {decision}d.")
    return _back(request, service)


@viewer_required
@require_POST
def drill(request: HttpRequest, name: str, model: str) -> HttpResponse:
    service = _service(name, model)
    try:
        result = drills.drill(name, model, request.user)
    except (NotAllowed, TransitionError) as exc:
        messages.error(request, f"No rollback drill of {model} in {name}: {exc}.")
    else:
        if result.ok:
            messages.success(request, f"Rollback drill of {model} in {name}: back to #{result.previous_id} in "
                                      f"{result.back_ms} ms, forward to #{result.current_id} in "
                                      f"{result.forward_ms} ms.")
        else:
            messages.error(request, f"Rollback drill of {model} in {name} failed: {result.reason}.")
    return _back(request, service)
