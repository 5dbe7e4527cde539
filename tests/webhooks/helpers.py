"""Subscriptions and events for the webhook tests."""

from releases.actors import Actor
from releases.statemachine import record
from webhooks.events import EVENTS
from webhooks.models import Subscription

SECRET = "a-test-secret-of-32-characters!!"


def subscribe(url: str, events: tuple[str, ...] = tuple(EVENTS), **fields: object) -> Subscription:
    return Subscription.objects.create(name="ops", url=url, secret=SECRET, events=list(events), **fields)


def fire_alert(subject: str = "p95 high in production") -> None:
    """The audit event an alert receiver writes."""
    record(Actor.system("alertmanager"), "alert.fired", subject=subject, reason="p95 612 ms > 300 ms",
           after={"alert": "HighLatency"})
