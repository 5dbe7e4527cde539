"""The models: their list, and one model's page with its policy, trend charts and versions."""

from django.db.models import Count, Max, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from releases.models import Model, ModelVersion, Release
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.environment import service_rows
from slipway.prepared import Prepared

MODELS_PER_PAGE = 50
VERSIONS_PER_PAGE = 25


@viewer_required
def model_list(request: HttpRequest) -> HttpResponse:
    rows = Model.objects.annotate(version_count=Count("versions"), last_build=Max("versions__created_at"))
    return render(request, "releases/model_list.html",
                  {"page": queries.paginate(request, rows.order_by("name"), MODELS_PER_PAGE,
                                            moments=("last_build", "created_at"))})


@Prepared
def model_named(name: str) -> QuerySet[Model]:
    return Model.objects.select_related("policy__approver_group").filter(name=name)


@Prepared
def versions_of(model_id: int) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(model=model_id)


@Prepared
def versions_page(model_id: int, offset: int) -> QuerySet[ModelVersion]:
    """A page of the model's versions, newest first: the page's ids are read off their index first, so
    that a page far back does not sort every version of the model."""
    newest = ModelVersion.objects.filter(model=model_id).order_by("-created_at", "-id")
    return (ModelVersion.objects.filter(pk__in=newest.values("id")[offset:offset + VERSIONS_PER_PAGE])
            .select_related("author").only("label", "git_commit", "ci_run_url", "created_at", "author__username")
            .prefetch_related(Prefetch("releases", queryset=Release.objects.only("status", "version_id")))
            .order_by("-created_at", "-id"))


@viewer_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    try:
        model = model_named.get(name)
    except Model.DoesNotExist as missing:
        raise Http404(f"No model is named {name}") from missing
    metric, higher_is_better = queries.task_metric(model)
    trend = queries.model_trend(model)
    return render(request, "releases/model_detail.html", {
        "model": model,
        "page": queries.paginate(request, versions_of.rows(model.pk, pages=versions_page), VERSIONS_PER_PAGE,
                                 moments=("created_at",)),
        "trend": {"labels": [p["label"] for p in trend], "metric": metric, "higher_is_better": higher_is_better,
                  "task": [p["task"] for p in trend], "p95": [p["p95"] for p in trend],
                  "size_mb": [None if p["size"] is None else p["size"] / 1e6 for p in trend]},
        "trend_versions": queries.TREND_VERSIONS,
        "services": service_rows(request.user, "model", model.pk),
    })
