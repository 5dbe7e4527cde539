"""The monitoring panel of the environment and release pages: live quality, abnormal outputs and drift,
drawn by static/slipway/charts.js like the serving figures; and the release page's shadow panel: its
shadow runs' paired figures, and forms to start and stop one. The pages load both after they show
(htmx), and the figures refresh themselves at the collection interval, so they cost the pages nothing."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from monitoring.models import ShadowRun
from monitoring.queries import charts_of_environment, charts_of_release
from monitoring.shadowing import runs_of
from releases.actors import Actor
from releases.models import Deployment, Environment, Release
from releases.pages.access import viewer_required
from releases.roles import may
from workers import shadowing

REFRESH_SECONDS = 15  # the collection interval (slipway/settings.py, the "monitoring" beat entry)


def _panel(request: HttpRequest, charts: dict, line_kind: str, subject: str, url: str) -> HttpResponse:
    return render(request, "monitoring/_charts.html", {
        "charts": charts, "time_zone": settings.TIME_ZONE, "line_kind": line_kind, "subject": subject,
        "has_data": bool(charts["watch"]["series"] or charts["quality"]["series"]),
        "refresh_url": url, "refresh_seconds": REFRESH_SECONDS})


@viewer_required
def environment_panel(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    return _panel(request, charts_of_environment(environment), "release", environment.name,
                  reverse("monitoring-environment", args=[name]))


@viewer_required
def release_panel(request: HttpRequest, release_id: int) -> HttpResponse:
    release = get_object_or_404(Release, pk=release_id)
    return _panel(request, charts_of_release(release), "environment", f"release #{release.pk}",
                  reverse("monitoring-release", args=[release_id]))


@viewer_required
def release_shadow(request: HttpRequest, release_id: int) -> HttpResponse:
    """The release's shadow panel; ``?figures`` answers only the table (its own refresh)."""
    release = get_object_or_404(Release.objects.select_related("version__model"), pk=release_id)
    rows = shadow_panel(release)
    running = [row["run"] for row in rows if row["run"].stopped_at is None]
    beside = [] if running else list(
        Deployment.objects.filter(service__model_id=release.version.model_id, role=Deployment.Role.ACTIVE)
        .exclude(release=release).exclude(Exists(ShadowRun.objects.filter(service=OuterRef("service"),
                                                                         stopped_at=None)))
        .select_related("service__environment").order_by("service__environment__position"))
    return render(request, "monitoring/_shadow.html", {
        "release": release, "shadow_runs": rows, "running": running, "beside": beside,
        "may_deploy": may(request.user, "deploy"), "refresh_seconds": REFRESH_SECONDS,
        "only_figures": "figures" in request.GET})


def _deployer(request: HttpRequest) -> Actor:
    if not may(request.user, "deploy"):
        raise PermissionDenied(f"{request.user.get_username()} has no role that may deploy")
    return Actor.person(request.user)


def _number(request: HttpRequest, name: str, default: float) -> float:
    try:
        return float(request.POST.get(name) or default)
    except ValueError:
        raise shadowing.ShadowRefused(f"{name.replace('_', ' ')} must be a number", "invalid") from None


@viewer_required
@require_POST
def start_shadow(request: HttpRequest, release_id: int) -> HttpResponse:
    actor = _deployer(request)
    release = get_object_or_404(Release.objects.select_related("version__model"), pk=release_id)
    environment = request.POST.get("environment", "")
    try:
        shadowing.place_and_send(environment, release.version.model.name, release.pk, _number(request, "share", 0.1),
                                 actor, minutes=_number(request, "minutes", 10),
                                 min_pairs=_number(request, "min_pairs", 200))
    except shadowing.ShadowRefused as exc:
        messages.error(request, f"Release #{release.pk} not placed in shadow: {exc}.")
    else:
        messages.success(request, f"Release #{release.pk} is being placed in shadow in {environment}: its server "
                                  "starts on a deploy worker, then the copies begin.")
    return redirect(reverse("release", args=[release.pk]) + "#shadow")


@viewer_required
@require_POST
def stop_shadow(request: HttpRequest, run_id: int) -> HttpResponse:
    actor = _deployer(request)
    run = get_object_or_404(ShadowRun.objects.select_related("service__environment", "service__model"), pk=run_id)
    if run.stopped_at is None:
        run = shadowing.stop(run, actor)
        messages.success(request, f"The shadow of release #{run.shadow_id} in {run.environment} stopped "
                                  f"({run.verdict}).")
    return redirect(reverse("release", args=[run.shadow_id]) + "#shadow")


def shadow_panel(release: Release) -> list[dict]:
    """The paired figures of the release's shadow runs, as the panel shows them."""
    rows = []
    for run in runs_of(release):
        f = run.figures
        agreement = next(((label, f[key]) for key, label in (("same_label_rate", "same label rate"),
                                                             ("mean_cosine", "mean cosine"),
                                                             ("mean_abs_difference", "mean abs difference"))
                          if key in f), ("agreement", None))
        rows.append({"run": run, "pairs": f.get("pairs", 0), "agreement_label": agreement[0],
                     "agreement": agreement[1], "p50": (f.get("active_p50_ms"), f.get("shadow_p50_ms")),
                     "p95": (f.get("active_p95_ms"), f.get("shadow_p95_ms")),
                     "p95_interval": f.get("p95_difference_interval_ms"), "p95_real": f.get("p95_difference_is_real"),
                     "errors": f.get("errors", 0) + f.get("mismatched", 0), "dropped": f.get("dropped", 0)})
    return rows
