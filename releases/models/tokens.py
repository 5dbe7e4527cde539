"""API tokens for CI and scripts: only a hash is stored; each token carries scopes."""

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

SCOPES = {
    "builds:write": "post model builds",
    "releases:read": "read models, versions and releases",
    "approve": "approve or reject releases (the user must be an approver)",
    "deploy": "deploy releases (the user must be a deployer)",
    "rollback": "roll environments back (the user must be on-call or a deployer)",
    "webhooks:write": "create, change and delete webhook subscriptions, redeliver (the user must be an admin)",
    "feedback": "post ground-truth labels of served predictions (the user must be a deployer or on-call)",
    "alerts": "post Alertmanager notifications; rollbacks need a user who may roll back",
}
TOKEN_PREFIX = "slw_"  # noqa: S105 (a prefix, not a secret)


NOT_GIVEN: Any = object()


def default_expiry() -> datetime | None:
    """When a token made now expires by default (SLIPWAY_TOKEN_LIFETIME_DAYS; 0: never)."""
    days = settings.SLIPWAY_TOKEN_LIFETIME_DAYS
    return timezone.now() + timedelta(days=days) if days > 0 else None


def hash_token(raw: str) -> str:
    # Tokens carry 256 random bits, so one round of SHA-256 is enough: no dictionary to guess from.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="first characters, to recognise a token")
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    bound_models = models.JSONField(default=list, blank=True,
                                    help_text="model names the token may name in alerts (empty: any)")
    bound_environments = models.JSONField(default=list, blank=True,
                                          help_text="environment names the token may name in alerts (empty: any)")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, scopes: list[str], expires_at=NOT_GIVEN, *,  # noqa: ANN001
              models: list[str] | None = None, environments: list[str] | None = None) -> tuple["ApiToken", str]:
        """Create a token; the raw value is returned once and never stored. It expires after
        SLIPWAY_TOKEN_LIFETIME_DAYS unless `expires_at` says when (None: never)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        if expires_at is NOT_GIVEN:
            expires_at = default_expiry()
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=raw[:10], digest=hash_token(raw),
                                   scopes=sorted(set(scopes)), expires_at=expires_at,
                                   bound_models=sorted(set(models or [])),
                                   bound_environments=sorted(set(environments or [])))
        return token, raw

    def binds(self, model: str, environment: str) -> bool:
        """Whether the token may name this model and environment (empty bindings allow any)."""
        return ((not self.bound_models or model in self.bound_models)
                and (not self.bound_environments or environment in self.bound_environments))

    @property
    def is_usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())
