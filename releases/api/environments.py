"""Environments and each model's service in them over the API: what serves, what served when, rollback,
and a person's decision on a canary.

/environments/<env>/models/<model>/... is the home of every move; /environments/<env>/rollback/ stays
for clients of one model per environment and asks which model when there are several."""

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.fields import DateTimeField
from rest_framework.request import Request
from rest_framework.response import Response

from releases import canaries, deploys, drills
from releases.api import serializers as s
from releases.api.views import token_name
from releases.models import Deployment, Environment, Service, TrafficChange

RUNNING = Deployment.objects.exclude(role=Deployment.Role.STOPPED).select_related("release__version__model")
AT = OpenApiParameter("at", str, description="ISO 8601 time; default now")


def _moment(request: Request):  # noqa: ANN202 - datetime
    raw = request.query_params.get("at")
    try:
        return DateTimeField().to_internal_value(raw) if raw else timezone.now()
    except ValidationError:
        raise ValidationError({"at": [f"not an ISO 8601 time: {raw!r}"]}) from None


def _services() -> QuerySet[Service]:
    return Service.objects.select_related("environment", "model").prefetch_related(
        Prefetch("deployments", queryset=RUNNING, to_attr="running"))


class EnvironmentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.EnvironmentSerializer
    lookup_field = "name"
    scopes = {"rollback": "rollback"}
    roles = {"rollback": "rollback"}
    queryset = Environment.objects.prefetch_related(Prefetch("services", queryset=_services(), to_attr="services_now"))

    @extend_schema(responses=s.TrafficChangeSerializer(many=True))
    @action(detail=True)
    def changes(self, request: Request, name: str) -> Response:
        """Every traffic move of every model in the environment, newest first."""
        environment = get_object_or_404(Environment, name=name)
        rows = TrafficChange.objects.filter(service__environment=environment).select_related("actor", "service__model")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.TrafficChangeSerializer(page, many=True).data)

    @extend_schema(parameters=[AT], responses=s.LiveAtSerializer)
    @action(detail=True, url_path="live-at")
    def live_at(self, request: Request, name: str) -> Response:
        """What served each model of the environment at a moment (`releases`: all of them, largest share first)."""
        environment = get_object_or_404(Environment, name=name)
        at = _moment(request)
        services, everything = [], []
        for service in environment.services.select_related("model").order_by("model__name"):
            change, releases = deploys.live_at(service, at)
            services.append({"model": service.model.name, "change": change, "releases": releases})
            everything += releases
        return Response(s.LiveAtSerializer({"at": at, "releases": everything, "services": services}).data)

    @extend_schema(request=s.EnvironmentRollbackSerializer, responses={200: s.TrafficChangeSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, name: str) -> Response:
        environment = get_object_or_404(Environment, name=name)
        serializer = s.EnvironmentRollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = serializer.validated_data.get("model")
        if model is None:
            serving = sorted(environment.services.filter(deployments__role=Deployment.Role.ACTIVE)
                             .values_list("model__name", flat=True).distinct())
            if len(serving) != 1:
                raise ValidationError({"model": [f"say which model to roll back; serving in {name}: "
                                                 f"{', '.join(serving) or 'none'}"]})
            model = serving[0]
        return _rollback(request, name, model, serializer.validated_data)


def _rollback(request: Request, environment: str, model: str, data: dict) -> Response:
    change = deploys.rollback(environment, model, request.user, data["reason"],
                              expected_release_id=data.get("expected_release"), token_name=token_name(request))
    return Response(s.TrafficChangeSerializer(change).data, status=status.HTTP_200_OK)


class ServiceViewSet(viewsets.ReadOnlyModelViewSet):
    """One model's service in one environment: /environments/<environment>/models/<model>/."""

    serializer_class = s.ServiceSerializer
    lookup_field = "model__name"
    lookup_url_kwarg = "model"
    lookup_value_regex = "[^/]+"
    scopes = {"rollback": "rollback", "drill": "rollback", "promote": "deploy", "abort": "deploy"}
    roles = {"rollback": "rollback", "drill": "rollback", "promote": "deploy", "abort": "deploy"}

    def get_queryset(self) -> QuerySet[Service]:
        if not Environment.objects.filter(name=self.kwargs["environment"]).exists():
            raise NotFound(f"there is no environment {self.kwargs['environment']!r}")
        return _services().filter(environment__name=self.kwargs["environment"]).order_by("model__name")

    def _service(self) -> Service:
        try:
            return deploys.service_of(self.kwargs["environment"], self.kwargs["model"])
        except deploys.NoService as exc:
            raise NotFound(str(exc)) from None

    @extend_schema(responses=s.TrafficChangeSerializer(many=True))
    @action(detail=True)
    def changes(self, request: Request, environment: str, model: str) -> Response:
        page = self.paginate_queryset(self._service().traffic_changes.select_related("actor"))
        return self.get_paginated_response(s.TrafficChangeSerializer(page, many=True).data)

    @extend_schema(parameters=[AT], responses=s.LiveAtSerializer)
    @action(detail=True, url_path="live-at")
    def live_at(self, request: Request, environment: str, model: str) -> Response:
        at = _moment(request)
        change, releases = deploys.live_at(self._service(), at)
        return Response(s.LiveAtSerializer({"at": at, "change": change, "releases": releases}).data)

    @extend_schema(request=s.RollbackSerializer, responses={200: s.TrafficChangeSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, environment: str, model: str) -> Response:
        serializer = s.RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _rollback(request, environment, model, serializer.validated_data)

    @extend_schema(request=None, responses={201: s.DrillSerializer})
    @action(detail=True, methods=["post"])
    def drill(self, request: Request, environment: str, model: str) -> Response:
        """Roll the model back to its warm release and forward again, and record the times (a failed drill
        is recorded too, with the reason). 409 when it cannot start: nothing warm, a canary or shadow
        running, a deploy under way; nothing moves then."""
        self._service()
        run = drills.drill(environment, model, request.user, token_name=token_name(request))
        return Response(s.DrillSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.DrillSerializer(many=True))
    @action(detail=True, url_path="drills")
    def drill_history(self, request: Request, environment: str, model: str) -> Response:
        """The model's rollback drills in the environment, newest first."""
        page = self.paginate_queryset(self._service().drills.select_related("service__model", "service__environment"))
        return self.get_paginated_response(s.DrillSerializer(page, many=True).data)

    def _decide(self, request: Request, environment: str, model: str, promote: bool) -> Response:
        self._service()
        serializer = s.CanaryDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = canaries.decide(environment, model, request.user, promote=promote,
                              reason=serializer.validated_data["reason"], token_name=token_name(request))
        return Response(s.CanarySerializer(run).data)

    @extend_schema(request=s.CanaryDecisionSerializer, responses={200: s.CanarySerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, environment: str, model: str) -> Response:
        """Promote the model's running canary to all its traffic (e.g. one waiting after an inconclusive window)."""
        return self._decide(request, environment, model, promote=True)

    @extend_schema(request=s.CanaryDecisionSerializer, responses={200: s.CanarySerializer})
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, environment: str, model: str) -> Response:
        """Take the model's running canary out; the stable release keeps all traffic."""
        return self._decide(request, environment, model, promote=False)
