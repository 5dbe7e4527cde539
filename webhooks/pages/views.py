"""The webhooks pages: subscriptions with their last delivery, and each one's delivery history.
Everyone logged in reads them; admins create subscriptions and redeliver."""

from django.contrib import messages
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import stamp
from releases.roles import may
from webhooks import deliveries
from webhooks.models import Delivery, Subscription
from webhooks.pages.forms import SubscriptionForm

DELIVERIES_PER_PAGE = 25
NEW_SECRET_KEY = "webhooks:new_secret"  # noqa: S105 - a session key: the secret of a subscription just made, shown once


def _list_context(request: HttpRequest, form: SubscriptionForm | None) -> dict:
    last = Delivery.objects.filter(subscription=OuterRef("pk")).order_by("-created_at", "-id")
    rows = (Subscription.objects.select_related("model")
            .annotate(last_status=Subquery(last.values("status")[:1]), last_at=Subquery(last.values("created_at")[:1])))
    return {"subscriptions": stamp(rows, "last_at"), "form": form,
            "may_manage": may(request.user, "manage_webhooks")}


@viewer_required
def subscription_list(request: HttpRequest) -> HttpResponse:
    form = SubscriptionForm() if may(request.user, "manage_webhooks") else None
    return render(request, "webhooks/subscription_list.html", _list_context(request, form))


@viewer_required
@require_POST
def subscription_create(request: HttpRequest) -> HttpResponse:
    if not may(request.user, "manage_webhooks"):
        return HttpResponseForbidden("only admins may create webhook subscriptions")
    form = SubscriptionForm(request.POST)
    if not form.is_valid():
        return render(request, "webhooks/subscription_list.html", _list_context(request, form), status=400)
    form.instance.created_by = request.user
    subscription = form.save()
    request.session[NEW_SECRET_KEY] = [subscription.pk, subscription.secret]
    messages.success(request, f"Subscription “{subscription.name}” created.")
    return redirect("webhook", subscription_id=subscription.pk)


@viewer_required
def subscription_detail(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = get_object_or_404(Subscription.objects.select_related("model", "created_by"), pk=subscription_id)
    new = request.session.pop(NEW_SECRET_KEY, None)
    page = queries.paginate(request, subscription.deliveries.select_related("release__version"),
                            DELIVERIES_PER_PAGE, moments=("created_at", "delivered_at", "next_attempt_at"))
    return render(request, "webhooks/subscription_detail.html", {
        "subscription": subscription, "deliveries": page,
        "new_secret": new[1] if new and new[0] == subscription.pk else None,
        "may_manage": may(request.user, "manage_webhooks")})


@viewer_required
@require_POST
def redeliver(request: HttpRequest, subscription_id: int, delivery_id: int) -> HttpResponse:
    if not may(request.user, "manage_webhooks"):
        return HttpResponseForbidden("only admins may redeliver")
    delivery = get_object_or_404(Delivery.objects.select_related("subscription"), pk=delivery_id,
                                 subscription_id=subscription_id)
    copy = deliveries.redeliver(delivery)
    messages.success(request, f"The {delivery.event} event is sent again as delivery {copy.uuid}.")
    return redirect("webhook", subscription_id=subscription_id)
