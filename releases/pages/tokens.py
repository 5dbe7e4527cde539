"""API tokens: each person sees their own (admins every one), when each expires, and revokes them."""

from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from releases.actors import Actor
from releases.models import ApiToken
from releases.pages.access import viewer_required
from releases.roles import ADMIN, AnyUser, has_role
from releases.statemachine import record


def visible_tokens(user: AnyUser) -> QuerySet[ApiToken]:
    rows = ApiToken.objects.select_related("user").order_by("-created_at")
    return rows if has_role(user, ADMIN) else rows.filter(user_id=user.pk or 0)


@viewer_required
def token_list(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/token_list.html", {
        "tokens": visible_tokens(request.user), "lifetime_days": settings.SLIPWAY_TOKEN_LIFETIME_DAYS})


@viewer_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(visible_tokens(request.user), pk=token_id)
    if not token.revoked:
        ApiToken.objects.filter(pk=token.pk).update(revoked=True)
        record(Actor.person(request.user), "token.revoked", subject=f"token {token.prefix}… of {token.user}",
               after={"name": token.name, "scopes": token.scopes})
        messages.success(request, f"Token {token.name} ({token.prefix}…) is revoked: it is refused from now on.")
    return redirect("tokens")
