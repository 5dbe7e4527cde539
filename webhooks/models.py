"""Who wants to hear of which events (Subscription), and each message sent to them (Delivery)."""

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models

from webhooks.events import EVENTS


def validate_events(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("choose at least one event")
    unknown = sorted({str(v) for v in value} - set(EVENTS))
    if unknown:
        raise ValidationError(f"unknown events: {', '.join(unknown)}; known: {', '.join(EVENTS)}")


url_validator = URLValidator(schemes=["http", "https"], message="Enter an http or https URL.")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Subscription(models.Model):
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=500, validators=[url_validator],
                          help_text="where events are posted (http or https)")
    secret = models.CharField(max_length=200, default=new_secret, help_text="the key of the HMAC signature")
    events = models.JSONField(validators=[validate_events], help_text="the event names it receives")
    model = models.ForeignKey("releases.Model", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="webhook_subscriptions",
                              help_text="only events of this model's releases (empty: every event)")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} → {self.url}"

    def wants(self, event: str, model_id: int | None) -> bool:
        return self.active and event in self.events and (self.model_id is None or self.model_id == model_id)


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    release = models.ForeignKey("releases.Release", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="when it is (re)sent; empty once it succeeded or failed")
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"]),
                   models.Index(fields=["subscription", "-created_at"])]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} {self.uuid} to {self.subscription_id} ({self.status})"
