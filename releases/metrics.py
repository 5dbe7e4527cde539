"""The dashboard's /metrics for Prometheus: figures read from the database at scrape time.

Every web process answers the same (the database is the truth), so scraping any one is enough.
"""

import hmac
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from releases.health import release_health
from releases.models import Deployment, Release, StageRun, TrafficChange
from releases.models.pipeline import ReleaseStatus, StageStatus

STAGE_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600)
HEALTH_WINDOW_DAYS = 30
# Collectors of other apps (their AppConfig.ready adds them), served beside SlipwayCollector.
EXTRA_COLLECTORS: list[type[Collector]] = []


class SlipwayCollector(Collector):
    def collect(self) -> Iterator:
        releases = GaugeMetricFamily("slipway_releases", "Releases by status.", labels=["status"])
        counts = dict(Release.objects.values_list("status").annotate(n=Count("id")))
        for status in ReleaseStatus.values:
            releases.add_metric([status], counts.get(status, 0))
        yield releases
        yield GaugeMetricFamily("slipway_pending_approvals", "Releases waiting for people at a gate.",
                                value=counts.get(ReleaseStatus.AWAITING_APPROVAL, 0))
        rollbacks = CounterMetricFamily("slipway_rollbacks", "Rollbacks by environment.", labels=["environment"])
        moves = CounterMetricFamily("slipway_traffic_changes", "Traffic moves by environment and action.",
                                    labels=["environment", "action"])
        rolled_back: dict[str, int] = {}
        moved = TrafficChange.objects.values_list("service__environment__name", "action").annotate(n=Count("id"))
        for name, action, n in moved:
            moves.add_metric([name, action], n)
            if action == "rollback":
                rolled_back[name] = n
        for name, n in rolled_back.items():
            rollbacks.add_metric([name], n)
        yield rollbacks
        yield moves
        yield stage_durations()
        depth = GaugeMetricFamily("slipway_queue_depth", "Messages waiting in each worker queue.", labels=["queue"])
        for queue, n in queue_depths().items():
            depth.add_metric([queue], n)
        yield depth
        yield from health_families()


def health_families() -> Iterator[GaugeMetricFamily]:
    """Release health over the last HEALTH_WINDOW_DAYS days, per model and environment (releases/health.py)."""
    labels = ["model", "environment"]
    families = {
        "deploys_per_week": GaugeMetricFamily("slipway_deploys_per_week", "Deployments per week.", labels=labels),
        "lead_time_s": GaugeMetricFamily("slipway_lead_time_seconds", "Median time from build to deployment.",
                                         labels=labels),
        "change_failure_rate": GaugeMetricFamily("slipway_change_failure_ratio",
                                                 "Changes rolled back over all changes.", labels=labels),
        "time_to_restore_s": GaugeMetricFamily("slipway_time_to_restore_seconds",
                                               "Mean time from a failure's start to its rollback.", labels=labels),
        "time_between_failures_s": GaugeMetricFamily("slipway_time_between_failures_seconds",
                                                     "Time in service over the number of failures.", labels=labels),
    }
    for health in release_health(HEALTH_WINDOW_DAYS):
        for name, family in families.items():
            value = getattr(health, name)
            if value is not None:
                family.add_metric([health.model, health.environment], value)
    yield from families.values()


def stage_durations() -> HistogramMetricFamily:
    """One query: per stage and result, how many finished within each bucket, and the total seconds."""
    family = HistogramMetricFamily("slipway_stage_duration_seconds", "How long finished stages ran.",
                                   labels=["stage", "result"])
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    buckets = {f"le_{b}": Count("id", filter=Q(took__lte=timedelta(seconds=b))) for b in STAGE_BUCKETS}
    rows = (StageRun.objects.filter(status__in=[StageStatus.SUCCEEDED, StageStatus.FAILED], started_at__isnull=False,
                                    finished_at__isnull=False)
            .annotate(took=took).values("name", "status").annotate(n=Count("id"), total=Sum("took"), **buckets))
    for row in rows:
        counts: Mapping[str, Any] = row
        cumulative = [(str(float(b)), counts[f"le_{b}"]) for b in STAGE_BUCKETS] + [("+Inf", row["n"])]
        family.add_metric([row["name"], row["status"]], cumulative, row["total"].total_seconds())
    return family


def queue_depths() -> dict[str, int]:
    import redis

    from slipway.celery import QUEUES

    client = redis.Redis.from_url(settings.BROKER_REDIS_URL, socket_timeout=2)
    try:
        return {queue: client.llen(queue) for queue in QUEUES}
    except (redis.RedisError, OSError):
        return {}


def _refused(request: HttpRequest) -> HttpResponse | None:
    """401 unless the request carries SLIPWAY_METRICS_TOKEN as its bearer token (compared in constant time)."""
    expected = f"Bearer {settings.SLIPWAY_METRICS_TOKEN}".encode()
    given = request.headers.get("Authorization", "").encode("utf-8", "replace")
    if not settings.SLIPWAY_METRICS_TOKEN or not hmac.compare_digest(given, expected):
        return HttpResponse("a bearer token is required (SLIPWAY_METRICS_TOKEN)\n", status=401,
                            content_type="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    if refused := _refused(request):
        return refused
    registry = CollectorRegistry()
    registry.register(SlipwayCollector())
    for collector in EXTRA_COLLECTORS:
        registry.register(collector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def scrape_targets_view(request: HttpRequest) -> HttpResponse:
    """Prometheus HTTP service discovery: every running model server, labelled by what it serves."""
    if refused := _refused(request):
        return refused

    running = (Deployment.objects.exclude(role=Deployment.Role.STOPPED).exclude(endpoint="")
               .select_related("service__environment", "release__version__model").order_by("id"))
    groups = [{"targets": [d.endpoint.removeprefix("http://").removeprefix("https://")],
               "labels": {"environment": d.service.environment.name, "release": str(d.release_id), "role": d.role,
                          "model": d.release.version.model.name, "version": d.release.version.label}}
              for d in running]
    return JsonResponse(groups, safe=False)
