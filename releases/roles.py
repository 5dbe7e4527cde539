"""Roles are Django groups. Each action names the groups whose members may take it."""

from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, Group, User
from django.db.models import QuerySet

from slipway.prepared import Prepared

# What request.user may be: the people acting, or nobody signed in.
AnyUser: TypeAlias = User | AnonymousUser

VIEWER, APPROVER, DEPLOYER, ON_CALL, ADMIN = "viewer", "approver", "deployer", "on-call", "admin"
ROLES = (VIEWER, APPROVER, DEPLOYER, ON_CALL, ADMIN)

# action → groups allowed (admin may do everything; approval also depends on the model's policy)
ACTION_ROLES: dict[str, set[str]] = {
    "view": set(ROLES),
    "post_build": {DEPLOYER, ADMIN},
    "approve": {APPROVER, ADMIN},
    "deploy": {DEPLOYER, ADMIN},
    "rollback": {ON_CALL, DEPLOYER, ADMIN},
    "cancel": {DEPLOYER, ADMIN},
    "feedback": {DEPLOYER, ON_CALL, ADMIN},
    "manage_webhooks": {ADMIN},
}


@Prepared
def group_names(user_id: int) -> QuerySet[Group, str]:
    return Group.objects.filter(user=user_id).values_list("name", flat=True)


def groups_of(user: AnyUser) -> set[str]:
    cached: set[str] | None = getattr(user, "_slipway_groups", None)
    if cached is None:
        cached = set(group_names.list(user.pk)) if user.pk is not None else set()
        remember_groups(user, cached)
    return cached


def remember_groups(user: AnyUser, names: set[str]) -> None:
    """Keep the user's group names on the user object for the rest of the request (a per-request cache:
    the object is read afresh by each request), e.g. when a query read them along with the user."""
    setattr(user, "_slipway_groups", names)  # noqa: B010


def has_role(user: AnyUser, *roles: str) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or bool(groups_of(user) & set(roles))


def may(user: AnyUser, action: str) -> bool:
    return has_role(user, *ACTION_ROLES[action])
