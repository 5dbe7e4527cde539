"""Shadow runs' records: one per service, the canary gate, and the end of a run whose active release changed."""

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from monitoring.models import MonitoringPolicy, ShadowRun
from monitoring.shadowing import CanaryGate, canary_gate, collect_shadows, resume_waiting_canaries, waiting_step
from releases.actors import Actor
from releases.models import Release, StageRun
from workers.context import SHADOW
from workers.runner import settle

pytestmark = pytest.mark.django_db


def _run(serving, active: Release, shadow: Release, **fields: object) -> ShadowRun:
    return ShadowRun.objects.create(service=serving["service"], active=active, shadow=shadow, share=0.1,
                                    started_at=timezone.now(), instance={"port": 11}, **fields)


def test_a_failed_shadow_verdict_refuses_the_canary(serving) -> None:
    active, candidate = (Release.objects.get(pk=pk) for pk in reversed(serving["ids"]))
    assert canary_gate(candidate, "production") == CanaryGate("go", "")
    run = _run(serving, active, candidate, verdict="wait")
    assert canary_gate(candidate, "production") == CanaryGate("go", "")
    run.verdict, run.reason = "fail", "same label rate 0.9000 < 0.98"
    run.save()
    assert canary_gate(candidate, "production") == CanaryGate(
        "refuse", "its shadow run in production failed: same label rate 0.9000 < 0.98")
    assert canary_gate(candidate, "staging") == CanaryGate("go", "")


def test_with_the_shadow_gate_the_canary_waits_for_the_verdict_and_is_sent_on_by_the_beat(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    MonitoringPolicy.objects.create(model=warm.version.model, shadow_gate=True)
    assert canary_gate(warm, "production") == CanaryGate("wait", (
        f"waiting for the shadow verdict: release #{warm.pk} has no shadow run in production yet; start one on "
        "its page, through the API or with manage.py shadow start"))
    run = _run(serving, active, warm, reason="12 of 200 pairs after 3.0 of 10 minutes")
    assert waiting_step(warm.pk) == "waiting for the shadow verdict: 12 of 200 pairs after 3.0 of 10 minutes"
    canary = warm.stages.get(name="canary")
    StageRun.objects.filter(pk=canary.pk).update(status="waiting", step="waiting for the shadow verdict")
    run.reason = "150 of 200 pairs after 7.5 of 10 minutes"
    run.save()
    assert resume_waiting_canaries() == 0
    canary.refresh_from_db()
    assert (canary.status, canary.step) == ("waiting", "waiting for the shadow verdict: 150 of 200 pairs after "
                                                       "7.5 of 10 minutes")
    viewer = Client()
    viewer.force_login(User.objects.get(username="victor"))
    assert "waiting for the shadow verdict: 150 of 200 pairs after 7.5 of 10 minutes" in viewer.get(
        f"/releases/{warm.pk}/").content.decode()
    run.verdict, run.reason = "pass", "200 pairs within thresholds"
    run.save()
    assert resume_waiting_canaries() == 1
    canary.refresh_from_db()
    assert canary.status == "queued"
    assert canary_gate(warm, "production") == CanaryGate("go", "its shadow run in production passed: 200 pairs "
                                                               "within thresholds")


def test_with_the_shadow_gate_a_run_stopped_before_its_verdict_refuses_the_canary(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    MonitoringPolicy.objects.create(model=warm.version.model, shadow_gate=True)
    _run(serving, active, warm, stopped_at=timezone.now(), reason="3 of 200 pairs after 0.5 of 10 minutes")
    assert canary_gate(warm, "production") == CanaryGate(
        "refuse", "its shadow run in production was stopped before a verdict (3 of 200 pairs after 0.5 of 10 minutes)")


def test_one_running_shadow_per_service(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    _run(serving, active, warm)
    with pytest.raises(IntegrityError), transaction.atomic():
        _run(serving, active, warm)


def test_a_run_ends_when_its_active_release_is_no_longer_active(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    starting = ShadowRun.objects.create(service=serving["service"], active=warm, shadow=active, share=0.5,
                                        started_at=timezone.now())
    assert collect_shadows() == 0  # its server is not started yet
    starting.instance = {"port": 11}
    starting.save()
    assert collect_shadows() == 1
    starting.refresh_from_db()
    assert starting.stopped_at is not None and starting.reason.startswith(f"release #{warm.pk} is no longer active")


def test_a_canary_stage_that_waits_for_the_shadow_says_how_far_it_is(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    MonitoringPolicy.objects.create(model=warm.version.model, shadow_gate=True)
    _run(serving, active, warm, reason="40 of 200 pairs after 1.0 of 10 minutes")
    StageRun.objects.filter(release=warm, name="canary").update(status="running", claim="mine")
    settle(warm.stages.get(name="canary"), Actor.worker(), SHADOW)
    canary = warm.stages.get(name="canary")
    assert (canary.status, canary.step) == ("waiting", "waiting for the shadow verdict: 40 of 200 pairs after 1.0 "
                                                       "of 10 minutes")
