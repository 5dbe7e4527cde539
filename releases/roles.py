"""Roles are Django groups. Each action names the groups whose members may take it."""

from django.contrib.auth.models import AbstractBaseUser

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


def groups_of(user: AbstractBaseUser) -> set[str]:
    cached = getattr(user, "_slipway_groups", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._slipway_groups = cached
    return cached


def has_role(user: AbstractBaseUser, *roles: str) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or bool(groups_of(user) & set(roles))


def may(user: AbstractBaseUser, action: str) -> bool:
    return has_role(user, *ACTION_ROLES[action])
