"""Webhook subscriptions over the API: admins manage them; everyone who reads releases sees them."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webhooks import deliveries
from webhooks.api import serializers as s
from webhooks.models import Delivery, Subscription

WRITES = ("create", "update", "partial_update", "destroy", "redeliver")


class SubscriptionViewSet(viewsets.ModelViewSet):
    serializer_class = s.SubscriptionSerializer
    queryset = Subscription.objects.select_related("model", "created_by")
    lookup_value_regex = r"\d+"
    scopes = dict.fromkeys(WRITES, "webhooks:write")
    roles = dict.fromkeys(WRITES, "manage_webhooks")

    @extend_schema(responses={201: s.CreatedSubscriptionSerializer})
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = serializer.save(created_by=request.user)
        return Response(s.CreatedSubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.DeliverySerializer(many=True))
    @action(detail=True)
    def deliveries(self, request: Request, pk: str) -> Response:
        subscription = self.get_object()
        page = self.paginate_queryset(subscription.deliveries.all())
        return self.get_paginated_response(s.DeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>\d+)/redeliver")
    def redeliver(self, request: Request, pk: str, delivery_id: str) -> Response:
        delivery = get_object_or_404(Delivery.objects.select_related("subscription"), pk=delivery_id,
                                     subscription_id=self.get_object().pk)
        copy = deliveries.redeliver(delivery)
        return Response(s.DeliverySerializer(copy).data, status=status.HTTP_202_ACCEPTED)
