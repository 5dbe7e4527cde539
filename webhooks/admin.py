from django.contrib import admin

from webhooks.models import Delivery, Subscription


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "model", "active", "created_by", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["created_by", "created_at"]

    def get_exclude(self, request, obj: Subscription | None = None) -> list[str]:  # noqa: ANN001
        """The secret shows when the subscription is made, never afterwards."""
        return ["secret"] if obj is not None else []

    def save_model(self, request, obj: Subscription, form, change: bool) -> None:  # noqa: ANN001
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["uuid", "subscription", "event", "status", "attempts", "last_response_code", "created_at"]
    list_filter = ["status", "event"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False
