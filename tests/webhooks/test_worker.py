"""Deliveries through the real Celery worker: retried with growing delays, failed after the last attempt,
re-sent from the database when their message was lost, and sent for a build posted over the API."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from tests.conftest import build_form, token_client, wait_for_status
from tests.webhooks.helpers import SECRET, fire_alert, subscribe
from tests.webhooks.receiver import Receiver, dead_url
from webhooks.deliveries import resend_due
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def settled(timeout: float = 30, **which: object) -> list[Delivery]:
    """The deliveries (all, or `which`) once none is pending or retrying any more: the worker is done with them."""
    rows = Delivery.objects.filter(**which).order_by("id")
    deadline = time.monotonic() + timeout
    while rows.filter(status__in=["pending", "retrying"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = list(rows)
    assert all(x.status in ("succeeded", "failed") for x in rows), [(x.status, x.next_attempt_at) for x in rows]
    return rows


def test_a_receiver_that_fails_twice_gets_the_third_attempt_after_growing_delays(celery_worker):
    backoff = settings.SLIPWAY_WEBHOOK_BACKOFF_S
    assert (backoff, settings.SLIPWAY_WEBHOOK_MAX_ATTEMPTS) == (0.25, 3)  # tests/settings.py, for the worker too
    with Receiver(SECRET, answers=(503, 502)) as receiver:
        subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        hits = receiver.wait_for(3)
        [delivery] = settled()
    assert [(h.signed, h.delivery) for h in hits] == [(True, str(delivery.uuid))] * 3
    first_wait, second_wait = hits[1].at - hits[0].at, hits[2].at - hits[1].at
    # Each retry waits at least its scheduled delay (the backoff, then twice it); how much longer depends
    # on the machine's load, so the two waits are not compared with each other.
    assert backoff <= first_wait and 2 * backoff <= second_wait, (first_wait, second_wait)
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.last_error) == (
        "succeeded", 3, 200, "")


def test_a_dead_receiver_fails_the_delivery_after_the_last_attempt_with_the_reason(celery_worker):
    subscribe(dead_url(), ("alert_firing",))
    fire_alert()
    [delivery] = settled()
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.next_attempt_at) == (
        "failed", 3, None, None)
    assert delivery.last_error.startswith("gave up after 3 attempts; last: ConnectionError: ")
    assert "Connection refused" in delivery.last_error


def test_a_delivery_whose_message_was_lost_is_sent_by_the_sweep(celery_worker):
    with Receiver(SECRET) as receiver:
        subscription = subscribe(receiver.url, ("alert_firing",))
        now = timezone.now()
        lost = Delivery.objects.create(subscription=subscription, event="alert_firing", payload={"event": "x"},
                                       next_attempt_at=now - timedelta(minutes=5))
        Delivery.objects.create(subscription=subscription, event="alert_firing", payload={"event": "y"},
                                next_attempt_at=now + timedelta(minutes=5))  # a retry still to come
        assert resend_due() == 1
        [hit] = receiver.wait_for(1)
        [lost_now] = settled(pk=lost.pk)
        Delivery.objects.exclude(pk=lost.pk).delete()
    assert hit.delivery == str(lost.uuid)
    assert (lost_now.status, lost_now.attempts) == ("succeeded", 1)


def test_a_posted_build_tells_the_receiver_it_was_received_and_waits_at_the_gate(celery_worker, users):
    with Receiver(SECRET) as receiver:
        subscribe(receiver.url, ("build_received", "gate_waiting", "approved"))
        answer = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
        assert answer.status_code == 201, answer.json()
        release_id = answer.json()["release"]["id"]
        wait_for_status(release_id, "awaiting_approval")
        hits = receiver.wait_for(2)
        settled()
    assert [(h.event, h.signed, h.body["release"]["id"]) for h in hits] == [
        ("build_received", True, release_id), ("gate_waiting", True, release_id)]
    assert hits[0].body["release"] == {"id": release_id, "model": "digits", "version": "1.0.0", "status": "pending",
                                       "path": f"/releases/{release_id}/"}
    assert (hits[1].body["gate"], hits[1].body["approvals_required"], hits[1].body["actor"][:7]) == (
        "release", 1, "worker@")
