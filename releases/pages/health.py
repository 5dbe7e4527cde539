"""Release health: DORA's figures per model and environment over a chosen window; production's
failures apart from the rollbacks of environments before it (caught before they reached users)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from releases.health import release_health
from releases.pages.access import viewer_required
from releases.pages.display import duration

WINDOWS = (7, 30, 90)


@viewer_required
def health(request: HttpRequest) -> HttpResponse:
    asked = request.GET.get("days", "30")
    days = int(asked) if asked in {str(w) for w in WINDOWS} else 30
    rows = [{"model": h.model, "environment": h.environment, "deployments": h.deployments,
             "per_week": f"{h.deploys_per_week:.2g}", "lead_time": duration(h.lead_time_s),
             "changes": h.changes, "failed": h.failed_changes,
             "failure_rate": "—" if h.change_failure_rate is None else f"{h.change_failure_rate:.0%}",
             "failures": h.failures, "restore": duration(h.time_to_restore_s),
             "between": duration(h.time_between_failures_s), "production": h.production}
            for h in release_health(days)]
    return render(request, "releases/health.html", {
        "production": [r for r in rows if r["production"]], "before": [r for r in rows if not r["production"]],
        "days": days, "windows": WINDOWS})
