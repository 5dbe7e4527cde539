"""Bearer tokens for CI and scripts, looked up by their hash."""

from datetime import timedelta

from django.db.models import F
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from releases.models import ApiToken
from releases.models.tokens import hash_token
from releases.roles import remember_groups

TOUCH_EVERY = timedelta(minutes=1)


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):  # noqa: ANN001, ANN201
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in (b"bearer", b"token"):
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("the token is not ASCII") from None
        # The user's groups come in the same query (a row per group), so the role checks that follow ask
        # the database nothing more: a rollback's every round trip before traffic moves counts.
        rows = list(ApiToken.objects.select_related("user").filter(digest=hash_token(raw))
                    .annotate(group_name=F("user__groups__name")).order_by())
        token = rows[0] if rows else None
        if token is None or not token.is_usable or not token.user.is_active:
            raise AuthenticationFailed("the token is unknown, expired or revoked")
        remember_groups(token.user, {row.group_name for row in rows if row.group_name is not None})
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:  # noqa: ANN001
        return 'Bearer realm="slipway"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema) -> dict:  # noqa: ANN001
        return {"type": "http", "scheme": "bearer", "description": "A Slipway API token (slw_…) with scopes."}
