"""Deliveries are made in the transaction of the audit event that they tell of, and sent after it commits.

The database is the truth: a delivery whose message is lost (a broker outage, a worker killed) is
found by `resend_due` from its next_attempt_at alone and sent again.
"""

import logging
from datetime import timedelta
from functools import partial

from celery import current_app
from django.db import transaction
from django.utils import timezone

from releases.models import AuditEvent
from webhooks.events import ACTIONS, occurrence, payload
from webhooks.models import Delivery, Subscription

log = logging.getLogger(__name__)
DELIVER_TASK = "webhooks.tasks.deliver"
QUEUE = "cpu"
# A due delivery is sent again once it is this late: its own message had the time to arrive.
RESEND_AFTER = timedelta(seconds=15)


def on_audit_event(sender: type, instance: AuditEvent, created: bool, **kwargs: object) -> None:
    """post_save of an AuditEvent: one delivery per subscription that wants its event.

    In a savepoint of the audit event's transaction: a webhook that cannot be made is logged, and never
    undoes the approval, deploy or rollback that the event records."""
    if not created or instance.action not in ACTIONS:
        return
    try:
        with transaction.atomic():
            make_deliveries(instance)
    except Exception:
        log.exception("no webhook deliveries for audit event %s (%s)", instance.pk, instance.action)


def make_deliveries(instance: AuditEvent) -> None:
    subscriptions = list(Subscription.objects.filter(active=True))
    if not subscriptions:
        return
    found = occurrence(instance)
    if found is None:
        return
    model_id = found.release.version.model_id if found.release else None
    wanting = [s for s in subscriptions if s.wants(found.event, model_id)]
    if not wanting:
        return
    body = payload(instance, found)
    now = timezone.now()
    made = Delivery.objects.bulk_create(
        Delivery(subscription=s, event=found.event, release=found.release, payload=body, next_attempt_at=now)
        for s in wanting)
    for delivery in made:
        transaction.on_commit(partial(enqueue, delivery.pk))


def enqueue(delivery_id: int, countdown: float | None = None) -> bool:
    """Hand a delivery to a worker (after `countdown` seconds). A broker that is down loses nothing:
    the delivery stays due in the database and `resend_due` sends it later."""
    try:
        current_app.send_task(DELIVER_TASK, kwargs={"delivery_id": delivery_id}, queue=QUEUE, countdown=countdown)
    except Exception:
        log.exception("could not send webhook delivery %s to the broker; it stays due", delivery_id)
        return False
    return True


def redeliver(delivery: Delivery) -> Delivery:
    """A new delivery of the same event and body (with its own id), sent now."""
    copy = Delivery.objects.create(subscription=delivery.subscription, event=delivery.event,
                                   release_id=delivery.release_id, payload=delivery.payload,
                                   next_attempt_at=timezone.now())
    transaction.on_commit(lambda: enqueue(copy.pk))
    return copy


def resend_due() -> int:
    """Send again every delivery that is due and late; run by Celery beat."""
    late = timezone.now() - RESEND_AFTER
    due = list(Delivery.objects.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING],
                                       next_attempt_at__lt=late).values_list("pk", flat=True)[:1000])
    return sum(enqueue(pk) for pk in due)
