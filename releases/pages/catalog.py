"""The models: their list, and one model's page with its policy, trend charts and versions."""

from django.db.models import Count, Max, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from releases.models import Model, ModelVersion, Release
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.environment import service_rows

MODELS_PER_PAGE = 50
VERSIONS_PER_PAGE = 25


@viewer_required
def model_list(request: HttpRequest) -> HttpResponse:
    rows = Model.objects.annotate(version_count=Count("versions"), last_build=Max("versions__created_at"))
    return render(request, "releases/model_list.html",
                  {"page": queries.paginate(request, rows.order_by("name"), MODELS_PER_PAGE,
                                            moments=("last_build", "created_at"))})


@viewer_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(Model.objects.select_related("policy__approver_group"), name=name)
    metric, higher_is_better = queries.task_metric(model)
    versions = (ModelVersion.objects.filter(model=model).select_related("author")
                .only("label", "git_commit", "ci_run_url", "created_at", "author__username")
                .prefetch_related(Prefetch("releases", queryset=Release.objects.only("status", "version_id")))
                .order_by("-created_at", "-id"))
    trend = queries.model_trend(model)
    return render(request, "releases/model_detail.html", {
        "model": model,
        "page": queries.paginate(request, versions, VERSIONS_PER_PAGE, moments=("created_at",)),
        "trend": {"labels": [p["label"] for p in trend], "metric": metric, "higher_is_better": higher_is_better,
                  "task": [p["task"] for p in trend], "p95": [p["p95"] for p in trend],
                  "size_mb": [None if p["size"] is None else p["size"] / 1e6 for p in trend]},
        "trend_versions": queries.TREND_VERSIONS,
        "services": service_rows(request.user, model.services.all()),
    })
