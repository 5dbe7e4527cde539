"""/metrics: exact figures from the database, in a text that Prometheus' own promtool accepts."""

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from releases.models import Environment, Release, Service, StageRun, TrafficChange
from tests.conftest import build_form, token_client


def prometheus() -> Client:
    """A client that carries the metrics token, as Prometheus does."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {settings.SLIPWAY_METRICS_TOKEN}")


def scrape(client: Client | None = None) -> tuple[str, dict]:
    text = (client or prometheus()).get("/metrics").content.decode()
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
    digits = Service.objects.create(environment=Environment.objects.get(name="production"),
                                    model=Release.objects.get(pk=ids[0]).version.model)
    TrafficChange.objects.create(service=digits, at=timezone.now(), shares={}, action="rollback")


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


def test_prometheus_finds_every_running_model_server(users, settings, tmp_path):
    from releases.models import Deployment

    settings.ARTIFACT_DIR = tmp_path
    ci = token_client(users["ci"])
    ids = [ci.post("/api/v1/builds/", build_form(version=str(i)), format="multipart").json()["release"]["id"]
           for i in range(3)]
    production = Service.objects.create(environment=Environment.objects.get(name="production"),
                                        model=Release.objects.get(pk=ids[0]).version.model)
    for release_id, role, port in zip(ids, ["active", "warm", "stopped"], [9101, 9102, 9103], strict=True):
        Deployment.objects.create(service=production, release_id=release_id, role=role,
                                  endpoint=f"http://127.0.0.1:{port}")
    groups = prometheus().get("/metrics/targets").json()
    assert groups == [
        {"targets": ["127.0.0.1:9101"], "labels": {"environment": "production", "release": str(ids[0]),
                                                   "role": "active", "model": "digits", "version": "0"}},
        {"targets": ["127.0.0.1:9102"], "labels": {"environment": "production", "release": str(ids[1]),
                                                   "role": "warm", "model": "digits", "version": "1"}},
    ]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
def test_promtool_accepts_the_prometheus_configuration(tmp_path):
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
    # The token file is mounted in the container (compose.yaml); promtool wants it to exist.
    config = tmp_path / "prometheus.yml"
    text = (deploy / "prometheus.yml").read_text()
    assert text.count("credentials_file: /etc/prometheus/slipway_metrics_token") == 2
    (tmp_path / "token").write_text("t0ken")
    config.write_text(text.replace("/etc/prometheus/slipway_metrics_token", str(tmp_path / "token")))
    (tmp_path / "alerts.yml").write_text((deploy / "alerts.yml").read_text())
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
