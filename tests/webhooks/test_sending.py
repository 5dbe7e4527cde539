"""One attempt at a delivery, in this process: signed POST, outcome recorded, retries scheduled, idempotent."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from releases.models import AuditEvent
from tests.webhooks.helpers import SECRET, fire_alert, subscribe
from tests.webhooks.receiver import Receiver, dead_url
from webhooks.models import Delivery
from webhooks.sending import deliver, signature

pytestmark = pytest.mark.django_db


def test_a_delivery_is_posted_with_its_headers_and_a_signature_the_receiver_checks():
    with Receiver(SECRET) as receiver:
        subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        delivery = Delivery.objects.get()
        assert deliver(delivery.pk) == "succeeded"
        [hit] = receiver.hits
    audit = AuditEvent.objects.get(action="alert.fired")
    assert (hit.signed, hit.event, hit.delivery, hit.user_agent) == (True, "alert_firing", str(delivery.uuid),
                                                                      "Slipway-Webhooks/1")
    assert abs(int(hit.timestamp) - time.time()) <= 2
    assert hit.body == {"event": "alert_firing", "at": audit.at.isoformat(), "actor": "alertmanager",
                        "release": None, "subject": "p95 high in production", "reason": "p95 612 ms > 300 ms",
                        "before": {}, "after": {"alert": "HighLatency"}, "audit_event": audit.pk}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.last_error,
            delivery.next_attempt_at) == ("succeeded", 1, 200, "", None)
    assert delivery.delivered_at is not None


def test_a_receiver_with_another_secret_finds_the_signature_wrong():
    with Receiver("another-secret-another-secret!!") as receiver:
        subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        deliver(Delivery.objects.get().pk)
    assert [hit.signed for hit in receiver.hits] == [False]


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    # printf %s "1700000000.{\"a\":1}" | openssl dgst -sha256 -hmac key
    assert signature("key", "1700000000", b'{"a":1}') == (
        "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03")


def test_a_delivery_sent_twice_reaches_the_receiver_once():
    with Receiver(SECRET) as receiver:
        subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        delivery = Delivery.objects.get()
        assert [deliver(delivery.pk), deliver(delivery.pk)] == ["succeeded", None]
    assert len(receiver.hits) == 1
    assert Delivery.objects.get().attempts == 1


def test_an_error_answer_is_recorded_and_the_next_attempt_waits_for_the_backoff(settings):
    with Receiver(SECRET, answers=(500,)) as receiver:
        subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        delivery = Delivery.objects.get()
        before = timezone.now()
        assert deliver(delivery.pk) == "retrying"
        after = timezone.now()
        assert deliver(delivery.pk) is None  # not due yet: nothing is sent
    assert len(receiver.hits) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.last_error) == (
        "retrying", 1, 500, "HTTP 500 Internal Server Error")
    backoff = timedelta(seconds=settings.SLIPWAY_WEBHOOK_BACKOFF_S)
    assert before + backoff <= delivery.next_attempt_at <= after + backoff
    assert delivery.delivered_at is None


def test_the_last_attempt_that_fails_marks_the_delivery_failed_with_the_reason(settings):
    settings.SLIPWAY_WEBHOOK_MAX_ATTEMPTS = 1
    subscribe(dead_url(), ("alert_firing",))
    fire_alert()
    delivery = Delivery.objects.get()
    assert deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.next_attempt_at) == (
        "failed", 1, None, None)
    assert delivery.last_error.startswith("gave up after 1 attempt; last: ConnectionError: ")
    assert "Connection refused" in delivery.last_error


def test_a_deactivated_subscription_sends_nothing_and_says_why():
    with Receiver(SECRET) as receiver:
        subscription = subscribe(receiver.url, ("alert_firing",))
        fire_alert()
        subscription.active = False
        subscription.save()
        delivery = Delivery.objects.get()
        assert deliver(delivery.pk) is None
    assert receiver.hits == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed", 0, "not sent: the subscription is inactive")


def test_an_inactive_subscription_gets_no_deliveries():
    subscribe(dead_url(), ("alert_firing",), active=False)
    fire_alert()
    assert Delivery.objects.count() == 0
