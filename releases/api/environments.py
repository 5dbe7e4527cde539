"""Environments over the API: what serves, what served when, and rollback."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.fields import DateTimeField
from rest_framework.request import Request
from rest_framework.response import Response

from releases import deploys
from releases.api import serializers as s
from releases.api.views import token_name
from releases.models import Deployment, Environment


class EnvironmentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.EnvironmentSerializer
    lookup_field = "name"
    scopes = {"rollback": "rollback"}
    roles = {"rollback": "rollback"}
    queryset = Environment.objects.prefetch_related(Prefetch(
        "deployments", to_attr="running",
        queryset=Deployment.objects.exclude(role=Deployment.Role.STOPPED).select_related("release__version__model")))

    @extend_schema(responses=s.TrafficChangeSerializer(many=True))
    @action(detail=True)
    def changes(self, request: Request, name: str) -> Response:
        environment = get_object_or_404(Environment, name=name)
        page = self.paginate_queryset(environment.traffic_changes.select_related("actor"))
        return self.get_paginated_response(s.TrafficChangeSerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("at", str, description="ISO 8601 time; default now")],
                   responses=s.LiveAtSerializer)
    @action(detail=True, url_path="live-at")
    def live_at(self, request: Request, name: str) -> Response:
        environment = get_object_or_404(Environment, name=name)
        raw = request.query_params.get("at")
        try:
            at = DateTimeField().to_internal_value(raw) if raw else timezone.now()
        except ValidationError:
            raise ValidationError({"at": [f"not an ISO 8601 time: {raw!r}"]}) from None
        change, releases = deploys.live_at(environment, at)
        return Response(s.LiveAtSerializer({"at": at, "change": change, "releases": releases}).data)

    @extend_schema(request=s.RollbackSerializer, responses={200: s.TrafficChangeSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, name: str) -> Response:
        get_object_or_404(Environment, name=name)
        serializer = s.RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = deploys.rollback(name, request.user, serializer.validated_data["reason"],
                                  expected_release_id=serializer.validated_data.get("expected_release"),
                                  token_name=token_name(request))
        return Response(s.TrafficChangeSerializer(change).data, status=status.HTTP_200_OK)
