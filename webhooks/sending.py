"""Sending one delivery: claim it in the database, POST the signed body, record the outcome.

Idempotent: an attempt first claims the delivery (one more attempt, next_attempt_at moved past the
request's timeout) in a short transaction; a second message for the same delivery, or a resend by the
sweeper, finds it claimed or settled and does nothing. Receivers may still see a delivery twice when a
worker dies between the POST and the record: X-Slipway-Delivery names it, so they can tell.
"""

import hashlib
import hmac
import json
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webhooks import deliveries, targets
from webhooks.models import Delivery

TIMEOUT_S = (5, 10)  # connect, read
# A claimed attempt is not sent again before this: longer than any request can take.
CLAIM = timedelta(seconds=sum(TIMEOUT_S) + 45)
ERROR_CHARS = 1000
OPEN = [Delivery.Status.PENDING, Delivery.Status.RETRYING]
USER_AGENT = "Slipway-Webhooks/1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the subscription's secret>."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def backoff_s(attempt: int) -> float:
    """The wait after failed attempt number `attempt` (1, 2, …): the first delay, doubled each time."""
    return settings.SLIPWAY_WEBHOOK_BACKOFF_S * 2 ** (attempt - 1)


def claim(delivery_id: int) -> Delivery | None:
    """The delivery, counted as one more attempt, when it is open and due; else None."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(skip_locked=True, of=("self",)).select_related("subscription")
                    .filter(pk=delivery_id, status__in=OPEN, next_attempt_at__lte=now).first())
        if delivery is None:
            return None
        if not delivery.subscription.active:
            delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
            delivery.last_error = "not sent: the subscription is inactive"
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def post(delivery: Delivery) -> tuple[int | None, str]:
    """POST the signed body; (response code or None, error text or "" when the receiver took it)."""
    body = body_of(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Slipway-Event": delivery.event,
        "X-Slipway-Delivery": str(delivery.uuid),
        "X-Slipway-Timestamp": timestamp,
        "X-Slipway-Signature": signature(delivery.subscription.secret, timestamp, body),
    }
    try:
        response = targets.post(delivery.subscription.url, data=body, headers=headers, timeout=TIMEOUT_S)
    except targets.BlockedTarget as exc:
        return None, f"not sent: {exc}"
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
    with response:
        if 200 <= response.status_code < 300:
            return response.status_code, ""
        # The answer's body is never kept: it could be anything the receiver (or what sits behind it) says.
        return response.status_code, f"HTTP {response.status_code} {response.reason}"


def record(delivery: Delivery, code: int | None, error: str) -> Delivery.Status:
    """The attempt's outcome; after a failure, the next attempt is scheduled or the delivery fails."""
    now = timezone.now()
    fields: dict[str, object] = {"last_response_code": code, "last_error": error[:ERROR_CHARS]}
    status = Delivery.Status.SUCCEEDED if not error else Delivery.Status.RETRYING
    if not error:
        fields |= {"status": Delivery.Status.SUCCEEDED, "delivered_at": now, "next_attempt_at": None}
    elif delivery.attempts >= settings.SLIPWAY_WEBHOOK_MAX_ATTEMPTS:
        tries = f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}"
        reason = f"gave up after {tries}; last: {error}"
        status = Delivery.Status.FAILED
        fields |= {"status": status, "next_attempt_at": None, "last_error": reason[:ERROR_CHARS]}
    else:
        delay = backoff_s(delivery.attempts)
        fields |= {"status": Delivery.Status.RETRYING, "next_attempt_at": now + timedelta(seconds=delay)}
    with transaction.atomic():
        # Only this attempt's claim is settled here; a later attempt's record is never overwritten.
        settled = Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts, status__in=OPEN).update(**fields)
        if settled and status == Delivery.Status.RETRYING:
            transaction.on_commit(lambda: deliveries.enqueue(delivery.pk, countdown=delay))
    return status


def deliver(delivery_id: int) -> Delivery.Status | None:
    """One attempt at a delivery, if it is due; its new status, or None when there was nothing to do."""
    delivery = claim(delivery_id)
    if delivery is None:
        return None
    code, error = post(delivery)
    return record(delivery, code, error)
