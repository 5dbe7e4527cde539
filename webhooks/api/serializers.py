"""What the webhooks API reads and writes."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from releases.models import Model
from releases.models.catalog import slug_validator
from webhooks import targets
from webhooks.events import EVENTS
from webhooks.models import Delivery, Subscription, url_validator, validate_events


class ModelNameField(serializers.SlugRelatedField):
    """A model by its name; a name that cannot be one is refused before any query."""

    def to_internal_value(self, data: object) -> Model:
        if not isinstance(data, str):
            self.fail("invalid")
        slug_validator(data)
        return super().to_internal_value(data)


class SubscriptionSerializer(serializers.ModelSerializer):
    url = serializers.CharField(max_length=500, validators=[url_validator],
                                help_text="where events are posted: an http or https URL")
    events = serializers.ListField(child=serializers.CharField(max_length=40), max_length=len(EVENTS) * 2,
                                   help_text=f"the events it receives, of: {', '.join(EVENTS)}")
    model = ModelNameField(slug_field="name", queryset=Model.objects.all(), allow_null=True, required=False,
                           help_text="only events of this model's releases; empty or null: every event")
    secret = serializers.CharField(write_only=True, required=False, min_length=16, max_length=200,
                                   help_text="the HMAC key; generated when left out, shown once in the answer")
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True,
                                                                         allow_null=True)

    class Meta:
        model = Subscription
        fields = ["id", "name", "url", "events", "model", "active", "secret", "created_by", "created_at"]

    def validate_url(self, value: str) -> str:
        try:
            targets.check_on_save(value)
        except targets.BlockedTarget as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        try:
            validate_events(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return [name for name in EVENTS if name in value]


class CreatedSubscriptionSerializer(SubscriptionSerializer):
    secret = serializers.CharField(read_only=True, help_text="the HMAC key; shown this once")


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "uuid", "event", "release", "status", "attempts", "next_attempt_at", "last_response_code",
                  "last_error", "created_at", "delivered_at", "payload"]
