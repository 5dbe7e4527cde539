"""The monitoring panel of the environment and release pages: live quality, abnormal outputs and drift,
drawn by static/slipway/charts.js like the serving figures. The pages load it after they show
(htmx), and it refreshes itself at the collection interval, so it costs the pages themselves nothing."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from monitoring.queries import charts_of_environment, charts_of_release
from monitoring.shadowing import runs_of
from releases.models import Environment, Release
from releases.pages.access import viewer_required

REFRESH_SECONDS = 15  # the collection interval (slipway/settings.py, the "monitoring" beat entry)


def _panel(request: HttpRequest, charts: dict, line_kind: str, subject: str, url: str,
           shadow_runs: list | None = None) -> HttpResponse:
    return render(request, "monitoring/_charts.html", {
        "charts": charts, "time_zone": settings.TIME_ZONE, "line_kind": line_kind, "subject": subject,
        "has_data": bool(charts["watch"]["series"] or charts["quality"]["series"]),
        "refresh_url": url, "refresh_seconds": REFRESH_SECONDS, "shadow_runs": shadow_runs or []})


@viewer_required
def environment_panel(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    return _panel(request, charts_of_environment(environment), "release", environment.name,
                  reverse("monitoring-environment", args=[name]))


@viewer_required
def release_panel(request: HttpRequest, release_id: int) -> HttpResponse:
    release = get_object_or_404(Release, pk=release_id)
    return _panel(request, charts_of_release(release), "environment", f"release #{release.pk}",
                  reverse("monitoring-release", args=[release_id]), shadow_panel(release))


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
