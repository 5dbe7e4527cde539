"""The feedback API (labels by prediction id), the Alertmanager receiver, the monitoring policy, and a
model's shadow in an environment."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import alerts, feedback
from monitoring.models import MonitoringPolicy, ShadowRun
from releases.actors import Actor
from releases.api.auth import ApiTokenAuthentication
from releases.api.views import token_name
from releases.models import ApiToken, Model
from workers import shadowing


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
        fields = ["model", "on_alert", "cooldown_seconds", "shadow_gate"]


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


class ShadowRunSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="service.environment.name", read_only=True)
    model = serializers.CharField(source="service.model.name", read_only=True)
    state = serializers.SerializerMethodField(help_text="starting, running or stopped")

    class Meta:
        model = ShadowRun
        fields = ["id", "environment", "model", "shadow", "active", "share", "minutes", "min_pairs", "state",
                  "verdict", "reason", "figures", "started_at", "stopped_at"]

    def get_state(self, run: ShadowRun) -> str:
        return "stopped" if run.stopped_at else "starting" if run.starting else "running"


class ShadowStartSerializer(serializers.Serializer):
    release = serializers.IntegerField(min_value=1, max_value=2**63 - 1,
                                       help_text="the release to run in shadow (of this model)")
    share = serializers.FloatField(default=0.1, help_text="share of the active release's requests copied, (0, 1]")
    minutes = serializers.FloatField(default=10.0, help_text="shadow minutes before a verdict")
    min_pairs = serializers.IntegerField(default=200, help_text="pairs needed before a verdict")


REFUSED_STATUS = {"unknown": status.HTTP_404_NOT_FOUND, "invalid": status.HTTP_400_BAD_REQUEST,
                  "conflict": status.HTTP_409_CONFLICT}


def refused(exc: shadowing.ShadowRefused) -> Response:
    return Response({"error": exc.kind, "detail": str(exc)}, status=REFUSED_STATUS[exc.kind])


class ShadowView(APIView):
    """The model's shadow in the environment: GET its running run and paired figures, POST to place a
    release in shadow (202: a deploy worker starts its server), DELETE to stop it. One shadow per
    service: a second POST while one runs is refused (409)."""

    parser_classes = [JSONParser]
    scopes = {"post": "deploy", "delete": "deploy"}
    roles = {"post": "deploy", "delete": "deploy"}
    serializer_class = ShadowRunSerializer

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        super().initial(request, *args, **kwargs)
        token = request.auth
        if isinstance(token, ApiToken) and not token.binds(str(kwargs["model"]), str(kwargs["environment"])):
            self.permission_denied(request, f"this token is not bound to {kwargs['model']} in {kwargs['environment']}")

    def _running(self, environment: str, model: str) -> ShadowRun | Response:
        try:
            run = shadowing.running(environment, model)
        except shadowing.ShadowRefused as exc:
            return refused(exc)
        if run is None:
            return Response({"error": "not_found", "detail": f"no release of {model} is in shadow in {environment}"},
                            status=status.HTTP_404_NOT_FOUND)
        return run

    def get(self, request: Request, environment: str, model: str) -> Response:
        run = self._running(environment, model)
        return run if isinstance(run, Response) else Response(ShadowRunSerializer(run).data)

    @extend_schema(request=ShadowStartSerializer, responses={202: ShadowRunSerializer})
    def post(self, request: Request, environment: str, model: str) -> Response:
        form = ShadowStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            run = shadowing.place_and_send(environment, model, data["release"], data["share"],
                                           Actor.person(request.user, token_name(request)),
                                           minutes=data["minutes"], min_pairs=data["min_pairs"])
        except shadowing.ShadowRefused as exc:
            return refused(exc)
        return Response(ShadowRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: ShadowRunSerializer})
    def delete(self, request: Request, environment: str, model: str) -> Response:
        run = self._running(environment, model)
        if isinstance(run, Response):
            return run
        stopped = shadowing.stop(run, Actor.person(request.user, token_name(request)))
        return Response(ShadowRunSerializer(stopped).data)
