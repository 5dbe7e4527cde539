"""API tokens for CI and scripts: only a hash is stored; each token carries scopes."""

import hashlib
import secrets

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

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, scopes: list[str], expires_at=None) -> tuple["ApiToken", str]:  # noqa: ANN001
        """Create a token; the raw value is returned once and never stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=raw[:10], digest=hash_token(raw),
                                   scopes=sorted(set(scopes)), expires_at=expires_at)
        return token, raw

    @property
    def is_usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())
