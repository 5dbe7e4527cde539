"""Release health (DORA's figures) from a made-up month of traffic changes, with exact values."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from releases.health import release_health
from releases.models import AuditEvent, Environment, Model, ModelVersion, Service, TrafficChange
from tests.pages.data import make_model, make_release, make_version
from tests.releases.test_metrics import scrape

DAY, HOUR, MINUTE = 86400, 3600, 60


@pytest.fixture
def month(users) -> dict:
    """v1 deployed; v2 canaried, promoted, alerted on and rolled back; v3's canary aborted."""
    now = timezone.now()
    model = make_model()
    production = Service.objects.create(environment=Environment.objects.get(name="production"), model=model)
    releases = {}
    for label, built in (("1", 20 * DAY), ("2", 10 * DAY), ("3", 3 * DAY)):
        version = make_version(model, label, users["ci"])
        ModelVersion.objects.filter(pk=version.pk).update(created_at=now - timedelta(seconds=built))
        releases[label] = make_release(version, status="released")
    r1, r2, r3 = (str(releases[label].pk) for label in "123")

    def change(ago: float, action: str, shares: dict[str, int]) -> None:
        TrafficChange.objects.create(service=production, at=now - timedelta(seconds=ago), action=action,
                                     shares=shares)

    change(19 * DAY, "deploy", {r1: 100})
    change(9 * DAY, "canary", {r1: 90, r2: 10})
    change(9 * DAY - HOUR, "promote", {r2: 100})
    alert = AuditEvent.objects.create(actor_label="alertmanager", action="alert.fired", release=releases["2"])
    AuditEvent.objects.filter(pk=alert.pk).update(at=now - timedelta(seconds=5 * DAY))
    change(5 * DAY - 30 * MINUTE, "rollback", {r1: 100})
    change(2 * DAY, "canary", {r1: 90, r3: 10})
    change(2 * DAY - 10 * MINUTE, "rollback", {r1: 100})
    return {"now": now}


def test_a_month_of_changes(month):
    [health] = release_health(30, now=month["now"])
    assert (health.model, health.environment) == ("digits", "production")
    assert health.deployments == 2 and health.deploys_per_week == pytest.approx(2 / (30 / 7))
    assert health.lead_time_s == pytest.approx((DAY + (DAY + HOUR)) / 2)  # v1: 1 day; v2: 25 hours
    assert (health.failed_changes, health.changes) == (2, 3)
    assert health.change_failure_rate == pytest.approx(2 / 3)
    # v2: from the alert to the rollback, 30 minutes; v3's canary: 10 minutes from its start.
    assert health.restore_times == pytest.approx([30 * MINUTE, 10 * MINUTE])
    assert health.time_to_restore_s == pytest.approx(20 * MINUTE)
    # In service from v1's deploy 19 days ago (not the whole 30-day window), less the 40 minutes of restoring.
    assert health.in_service == timedelta(days=19)
    assert health.time_between_failures_s == pytest.approx((19 * DAY - 40 * MINUTE) / 2)


def test_a_shorter_window_starts_from_the_split_at_its_opening(month):
    [health] = release_health(7, now=month["now"])
    # v2 went out before the window: its rollback is a failure inside it, but not a change made in it.
    assert (health.deployments, health.changes, health.failed_changes) == (0, 1, 1)
    assert health.lead_time_s is None
    assert health.restore_times == pytest.approx([30 * MINUTE, 10 * MINUTE])
    assert health.time_between_failures_s == pytest.approx((7 * DAY - 40 * MINUTE) / 2)  # served all the window


def test_a_new_model_never_fails_less_often_than_it_has_existed(users):
    """Deployed an hour ago, rolled back 10 minutes later: one failure in an hour of service, not in 30 days."""
    now = timezone.now()
    model = make_model("fresh")
    production = Service.objects.create(environment=Environment.objects.get(name="production"), model=model)
    first, second = (make_release(make_version(model, label, users["ci"]), status="released") for label in "12")
    for ago, action, shares in ((HOUR, "deploy", {first.pk: 100}), (HOUR - 5 * MINUTE, "deploy", {second.pk: 100}),
                                (HOUR - 15 * MINUTE, "rollback", {first.pk: 100})):
        TrafficChange.objects.create(service=production, at=now - timedelta(seconds=ago), action=action,
                                     shares={str(k): v for k, v in shares.items()})
    [health] = release_health(30, now=now)
    assert health.failures == 1 and health.restore_times == pytest.approx([10 * MINUTE])
    assert health.time_between_failures_s == pytest.approx(HOUR - 10 * MINUTE)


def test_staging_rollbacks_are_shown_apart_from_production_failures(month, users):
    model = Model.objects.get(name="digits")
    staging = Service.objects.create(environment=Environment.objects.get(name="staging"), model=model)
    r4, r5 = (make_release(make_version(model, label, users["ci"]), status="released") for label in "45")
    now = month["now"]
    for ago, action, shares in ((2 * HOUR, "deploy", {r4.pk: 100}), (HOUR, "deploy", {r5.pk: 100}),
                                (HOUR - 5 * MINUTE, "rollback", {r4.pk: 100})):
        TrafficChange.objects.create(service=staging, at=now - timedelta(seconds=ago), action=action,
                                     shares={str(k): v for k, v in shares.items()})
    production, before = release_health(30, now=now)
    assert (production.environment, production.production, production.failures) == ("production", True, 2)
    assert (before.environment, before.production, before.failed_changes, before.changes) == ("staging", False, 1, 2)
    client = Client()
    client.force_login(users["alice"])
    page = client.get("/health/").content.decode()
    production_table, before_table = page.split('id="health-before"')
    assert "(2 of 3)" in production_table and "staging" not in production_table.split('id="health"')[1]
    assert "1 of 2 changes" in before_table and "5.0 min" in before_table, before_table


def test_nothing_served_nothing_counted(db):
    assert release_health(30) == []


def test_page_and_metrics(month, users):
    client = Client()
    client.force_login(users["alice"])
    page = client.get("/health/").content.decode()
    assert "67%" in page and "(2 of 3)" in page and "20.0 min" in page and "1.0 days" in page and "9.5 days" in page
    week = client.get("/health/?days=7").content.decode()
    assert "No release took traffic in production in the last 7 days" not in week
    assert "No release took traffic before production in the last 30 days" in page
    _, samples = scrape()
    labels = (("environment", "production"), ("model", "digits"))
    assert samples[("slipway_change_failure_ratio", labels)] == pytest.approx(2 / 3)
    assert samples[("slipway_time_to_restore_seconds", labels)] == pytest.approx(20 * MINUTE)
    assert samples[("slipway_lead_time_seconds", labels)] == pytest.approx(88200)
    assert samples[("slipway_deploys_per_week", labels)] == pytest.approx(2 / (30 / 7))
