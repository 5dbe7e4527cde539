"""Shadow runs' records: the canary gate and the end of a run whose active release changed."""

import pytest
from django.utils import timezone

from monitoring.models import ShadowRun
from monitoring.shadowing import canary_refusal, collect_shadows
from releases.models import Release

pytestmark = pytest.mark.django_db


def test_a_failed_shadow_verdict_refuses_the_canary(serving) -> None:
    active, candidate = (Release.objects.get(pk=pk) for pk in reversed(serving["ids"]))
    assert canary_refusal(candidate, "production") is None
    run = ShadowRun.objects.create(environment=serving["production"], active=active, shadow=candidate, share=0.1,
                                   started_at=timezone.now(), verdict="wait")
    assert canary_refusal(candidate, "production") is None
    run.verdict, run.reason = "fail", "same label rate 0.9000 < 0.98"
    run.save()
    assert canary_refusal(candidate, "production") == (
        "its shadow run in production failed: same label rate 0.9000 < 0.98")
    assert canary_refusal(candidate, "staging") is None


def test_a_run_ends_when_its_active_release_is_no_longer_active(serving) -> None:
    warm, active = (Release.objects.get(pk=pk) for pk in serving["ids"])
    run = ShadowRun.objects.create(environment=serving["production"], active=warm, shadow=active, share=0.5,
                                   started_at=timezone.now())
    assert collect_shadows() == 1
    run.refresh_from_db()
    assert run.stopped_at is not None and run.reason.startswith(f"release #{warm.pk} is no longer active")
