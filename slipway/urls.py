from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from releases.metrics import metrics_view, scrape_targets_view

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("metrics/targets", scrape_targets_view, name="metrics-targets"),
    path("api/v1/", include("releases.api.urls")),
    path("api/v1/", include("webhooks.api.urls")),
    path("api/v1/", include("monitoring.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("webhooks/", include("webhooks.pages.urls")),
    path("monitoring/", include("monitoring.page_urls")),
    path("", include("releases.pages.urls")),
]

handler404 = "releases.api.errors.not_found"
