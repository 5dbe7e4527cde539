"""Serving figures for the charts, from every running release's /metrics: differences between two
readings of the same server run; a restarted server's first reading only starts over."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from monitoring.models import CollectState
from monitoring.serving import record_serving
from releases.models import ServingSample
from serving.metrics import ServingMetrics

pytestmark = pytest.mark.django_db


class MetricsSession:
    """Answers GET <endpoint>/metrics with a server's registry, as requests.Session would."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics, self.asked = metrics, []

    def get(self, url: str, timeout: float) -> SimpleNamespace:
        self.asked.append(url)
        return SimpleNamespace(text=self.metrics.render().decode(), raise_for_status=lambda: None)


def _rewind(deployment, seconds: float) -> None:
    state = CollectState.objects.get(deployment=deployment)
    state.serving["at"] = (timezone.now() - timedelta(seconds=seconds)).isoformat()
    state.save()


def test_each_reading_stores_what_happened_since_the_last_one_of_the_same_run(serving):
    deployment = serving["active"]
    CollectState.objects.create(deployment=deployment, boot="run-1")
    metrics = ServingMetrics("digits", "2")
    session = MetricsSession(metrics)
    for _ in range(10):
        metrics.observe_request(200, 0.004, None)
    assert record_serving(deployment, session, 5.0) is None  # the first reading only starts the count
    assert session.asked == ["http://127.0.0.1:10/metrics"]

    for _ in range(18):
        metrics.observe_request(200, 0.004, None)
    for _ in range(2):
        metrics.observe_request(500, 0.2, "crash")
    _rewind(deployment, 10)
    sample = record_serving(deployment, session, 5.0)
    assert (sample.service_id, sample.release_id) == (serving["service"].pk, serving["ids"][1])
    assert sample.requests_per_s == pytest.approx(2.0, rel=0.01) and sample.error_rate == pytest.approx(0.1)
    assert 2.5 <= sample.latency_p95_ms <= 250

    CollectState.objects.filter(deployment=deployment).update(boot="run-2")  # the server restarted
    assert record_serving(deployment, session, 5.0) is None
    _rewind(deployment, 15)
    idle = record_serving(deployment, session, 5.0)
    assert (idle.requests_per_s, idle.error_rate, idle.latency_p95_ms) == (0.0, 0.0, None)
    assert ServingSample.objects.count() == 2


def test_records_past_their_retention_are_forgotten_and_newer_ones_kept(serving, settings):
    from monitoring.models import Label, Prediction, WatchSample
    from monitoring.retention import forget_old
    from monitoring.tasks import forget_old as task

    now, production, service = timezone.now(), serving["production"], serving["service"]
    for age, name in ((40, "old"), (1, "new")):
        at = now - timedelta(days=age)
        prediction = Prediction.objects.create(prediction_id=name, environment=production,
                                               release_id=serving["ids"][1], at=at, value=1.0)
        Label.objects.create(prediction=prediction, value=1.0)
        WatchSample.objects.create(environment=production, release_id=serving["ids"][1], at=at, rows=3)
        ServingSample.objects.create(service=service, release_id=serving["ids"][1], at=at, requests_per_s=1.0,
                                     error_rate=0.0)
    settings.SLIPWAY_MONITORING_RETENTION_DAYS = 30
    assert task() == {"predictions": 1, "watch_samples": 1, "serving_samples": 1}
    assert list(Prediction.objects.values_list("prediction_id", flat=True)) == ["new"]
    assert Label.objects.count() == WatchSample.objects.count() == ServingSample.objects.count() == 1
    assert forget_old(days=0) == {"predictions": 1, "watch_samples": 1, "serving_samples": 1}
