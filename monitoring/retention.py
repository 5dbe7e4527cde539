"""Forgetting old monitoring records, so that a long-running installation (the embedded default on
SQLite included) does not grow without end: predictions (with their labels), watch samples and
serving samples older than SLIPWAY_MONITORING_RETENTION_DAYS are deleted, in batches so that no
single statement holds the database for long. Audit events and releases are never forgotten."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone

from monitoring.models import Prediction, WatchSample
from releases.models import ServingSample

BATCH = 5000


def _delete_in_batches(rows: QuerySet[Model]) -> int:
    deleted = 0
    while ids := list(rows.values_list("pk", flat=True)[:BATCH]):
        deleted += rows.filter(pk__in=ids).delete()[1].get(rows.model._meta.label, 0)
    return deleted


def forget_old(days: float | None = None) -> dict[str, int]:
    """Delete what is older than the retention; how many of each kind went."""
    cutoff = timezone.now() - timedelta(days=settings.SLIPWAY_MONITORING_RETENTION_DAYS if days is None else days)
    return {"predictions": _delete_in_batches(Prediction.objects.filter(at__lt=cutoff)),
            "watch_samples": _delete_in_batches(WatchSample.objects.filter(at__lt=cutoff)),
            "serving_samples": _delete_in_batches(ServingSample.objects.filter(at__lt=cutoff))}
