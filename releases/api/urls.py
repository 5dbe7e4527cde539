from django.urls import include, path
from rest_framework.routers import DefaultRouter

from releases.api import environments, views

router = DefaultRouter()
router.register("models", views.ModelViewSet, basename="model")
router.register("releases", views.ReleaseViewSet, basename="release")
router.register("environments", environments.EnvironmentViewSet, basename="environment")
router.register(r"environments/(?P<environment>[^/]+)/models", environments.ServiceViewSet, basename="service")

urlpatterns = [
    path("builds/", views.BuildView.as_view(), name="build-create"),
    path("", include(router.urls)),
]
