"""Who may see pages: a signed-in person with a role (at least viewer). Logged-in users in no group
are refused, as the API refuses them."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from releases.roles import may


def viewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like login_required, and then 403 for a user with no role."""

    @wraps(view)
    def checked(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not may(request.user, "view"):
            raise PermissionDenied(f"{request.user.get_username()} has no role that may view Slipway")
        return view(request, *args, **kwargs)

    return login_required(checked)
