from django.urls import include, path
from rest_framework.routers import SimpleRouter

from webhooks.api.views import SubscriptionViewSet

router = SimpleRouter()
router.register("webhooks", SubscriptionViewSet, basename="webhook")

urlpatterns = [path("", include(router.urls))]
