"""Every API call needs a login; a token also needs the scope of the call, a person the role."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from releases.models import ApiToken
from releases.roles import may

READ_SCOPE = "releases:read"


class ScopedAccess(BasePermission):
    """Views say `scopes = {action: scope}` and `roles = {action: role action}` for their writes."""

    message = "authentication is required"

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        user = request.user
        if not user or not user.is_authenticated:
            return False
        action = getattr(view, "action", None) or request.method.lower()
        scope = READ_SCOPE if request.method in SAFE_METHODS else getattr(view, "scopes", {}).get(action)
        if scope is None:
            self.message = f"no scope is defined for {action}"
            return False
        if isinstance(request.auth, ApiToken) and scope not in request.auth.scopes:
            self.message = f"this token lacks the '{scope}' scope"
            return False
        role_action = "view" if request.method in SAFE_METHODS else getattr(view, "roles", {}).get(action)
        if role_action and not may(user, role_action):
            self.message = f"{user.get_username()} has no role that may {role_action.replace('_', ' ')}"
            return False
        return True
