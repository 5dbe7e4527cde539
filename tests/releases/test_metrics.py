"""/metrics: exact figures from the database, in a text that Prometheus' own promtool accepts."""

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from releases.models import Environment, Release, StageRun, TrafficChange
from tests.conftest import build_form, token_client


def scrape(client: Client | None = None) -> tuple[str, dict]:
    text = (client or Client()).get("/metrics").content.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


@pytest.fixture
def data(users, settings, tmp_path) -> None:
    settings.ARTIFACT_DIR = tmp_path
    ci = token_client(users["ci"])
    ids = [ci.post("/api/v1/builds/", build_form(version=str(i)), format="multipart").json()["release"]["id"]
           for i in range(3)]
    Release.objects.filter(pk=ids[0]).update(status="awaiting_approval")
    Release.objects.filter(pk=ids[1]).update(status="failed")
    start = timezone.now() - timedelta(hours=1)
    for seconds, status in ((3, "succeeded"), (40, "succeeded"), (2, "failed")):
        stage = StageRun.objects.filter(name="validate", started_at__isnull=True).first()
        StageRun.objects.filter(pk=stage.pk).update(status=status, started_at=start,
                                                    finished_at=start + timedelta(seconds=seconds))
    TrafficChange.objects.create(environment=Environment.objects.get(name="production"), at=timezone.now(),
                                 shares={}, action="rollback")


def test_release_stage_and_rollback_figures(data):
    _, samples = scrape()
    assert samples[("slipway_releases", (("status", "awaiting_approval"),))] == 1
    assert samples[("slipway_releases", (("status", "failed"),))] == 1
    assert samples[("slipway_releases", (("status", "pending"),))] == 1
    assert samples[("slipway_pending_approvals", ())] == 1
    assert samples[("slipway_rollbacks_total", (("environment", "production"),))] == 1
    ok = (("result", "succeeded"), ("stage", "validate"))
    assert samples[("slipway_stage_duration_seconds_count", ok)] == 2
    assert samples[("slipway_stage_duration_seconds_sum", ok)] == 43
    assert samples[("slipway_stage_duration_seconds_bucket", (("le", "5.0"), *ok))] == 1
    assert samples[("slipway_stage_duration_seconds_bucket", (("le", "60.0"), *ok))] == 2
    assert ("slipway_queue_depth", (("queue", "gpu"),)) in samples


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
def test_promtool_accepts_the_metrics(data):
    text, _ = scrape()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_configured_token_is_required(db, settings):
    settings.SLIPWAY_METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer s3cret").get("/metrics").status_code == 200
