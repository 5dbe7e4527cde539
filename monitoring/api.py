"""The feedback API (labels by prediction id), the Alertmanager receiver, and the monitoring policy."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import alerts, feedback
from monitoring.models import MonitoringPolicy
from releases.api.auth import ApiTokenAuthentication
from releases.api.views import token_name
from releases.models import ApiToken, Model


def malformed(exc: Exception) -> Response:
    return Response({"error": "malformed", "detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)


class FeedbackCounts(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="labels stored")
    unknown = serializers.IntegerField(help_text="no collected prediction has this id (yet: retry later)")
    duplicate = serializers.IntegerField(help_text="the prediction was labelled already, or twice in this batch")
    invalid = serializers.IntegerField(help_text='not {"prediction_id": string, "label": number}')


class FeedbackView(APIView):
    """Ground-truth labels for served predictions, in batches: [{"prediction_id": ..., "label": ...}]."""

    parser_classes = [JSONParser]
    scopes = {"post": "feedback"}
    roles = {"post": "feedback"}

    @extend_schema(request={"application/json": {"type": "array", "items": {"type": "object"}}},
                   responses={200: FeedbackCounts, 400: OpenApiResponse(description="the body is not a batch")})
    def post(self, request: Request) -> Response:
        try:
            items = feedback.batch_items(request.data)
        except feedback.MalformedBatch as exc:
            return malformed(exc)
        return Response(feedback.ingest(items))


class AlertsView(APIView):
    """Alertmanager's webhook receiver: each firing alert notifies or rolls back, by the model's policy.

    Only a token with the `alerts` scope may post (a browser session may not); its alerts may name only
    the models and environments it is bound to; it rolls back only when it also has the `rollback` scope."""

    authentication_classes = [ApiTokenAuthentication]
    parser_classes = [JSONParser]
    scopes = {"post": "alerts"}
    roles = {"post": "view"}

    @extend_schema(request={"application/json": {"type": "object"}},
                   responses={200: OpenApiResponse(description='{"alerts": [{"alertname", "fingerprint", '
                                                           '"action", "detail"}]}')})
    def post(self, request: Request) -> Response:
        token = request.auth
        assert isinstance(token, ApiToken)  # only ApiTokenAuthentication lets a request in here
        try:
            refused = alerts.unbound(request.data, token.binds)
            if refused:
                return Response({"error": "not_bound", "detail": f"this token is not bound to {', '.join(refused)}"},
                                status=status.HTTP_403_FORBIDDEN)
            outcomes = alerts.receive(request.data, request.user, token_name(request),
                                      may_roll_back="rollback" in token.scopes)
        except alerts.MalformedNotification as exc:
            return malformed(exc)
        return Response({"alerts": outcomes})


class MonitoringPolicySerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)

    class Meta:
        model = MonitoringPolicy
        fields = ["model", "on_alert", "cooldown_seconds"]


class PolicyView(APIView):
    """A model's monitoring policy: what its firing alerts do, and the rollback cool-down."""

    scopes = {"put": "deploy", "patch": "deploy"}
    roles = {"put": "deploy", "patch": "deploy"}
    serializer_class = MonitoringPolicySerializer

    def _policy(self, name: str) -> MonitoringPolicy:
        return alerts.policy_of(get_object_or_404(Model, name=name))

    def get(self, request: Request, name: str) -> Response:
        return Response(MonitoringPolicySerializer(self._policy(name)).data)

    def put(self, request: Request, name: str) -> Response:
        serializer = MonitoringPolicySerializer(self._policy(name), data=request.data,
                                                partial=request.method == "PATCH")
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    patch = put
