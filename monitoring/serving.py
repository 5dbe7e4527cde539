"""Serving figures of every running release, for the live traffic, latency and error charts.

With each collection (beat's `monitoring.tasks.collect`), every running model server's /metrics is
read once; the difference from the previous reading of the same server run is stored as a
ServingSample (requests/s, error rate, p95 latency). A server that restarted starts its counters over,
so its first reading after a restart only becomes the new starting point.
"""

from datetime import datetime

import requests
from django.db import transaction
from django.utils import timezone

from monitoring.models import CollectState
from releases.models import Deployment, ServingSample
from shipping.canary import parse_metrics, sample_from_json, sample_to_json, window


def record_serving(deployment: Deployment, session: requests.Session, timeout: float) -> ServingSample | None:
    """Read the deployment's /metrics; store what happened since the last reading of the same run."""
    answer = session.get(f"{deployment.endpoint}/metrics", timeout=timeout)
    answer.raise_for_status()
    now, at = parse_metrics(answer.text), timezone.now()
    with transaction.atomic():
        state, _ = CollectState.objects.select_for_update().get_or_create(deployment=deployment)
        before = state.serving
        state.serving = {"boot": state.boot, "at": at.isoformat(), "sample": sample_to_json(now)}
        state.save(update_fields=["serving"])
        if not before or before["boot"] != state.boot:
            return None
        seconds = max((at - datetime.fromisoformat(before["at"])).total_seconds(), 1e-3)
        stats = window(sample_from_json(before["sample"]), now)
        return ServingSample.objects.create(
            service_id=deployment.service_id, release_id=deployment.release_id, at=at,
            requests_per_s=stats.requests / seconds, error_rate=stats.error_rate,
            latency_p95_ms=None if stats.p95_seconds is None else stats.p95_seconds * 1000)
