from django.urls import path

from monitoring import pages

urlpatterns = [
    path("environments/<str:name>/", pages.environment_panel, name="monitoring-environment"),
    path("releases/<int:release_id>/", pages.release_panel, name="monitoring-release"),
]
