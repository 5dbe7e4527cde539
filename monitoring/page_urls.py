from django.urls import path

from monitoring import pages

urlpatterns = [
    path("environments/<str:name>/", pages.environment_panel, name="monitoring-environment"),
    path("releases/<int:release_id>/", pages.release_panel, name="monitoring-release"),
    path("releases/<int:release_id>/shadow/", pages.release_shadow, name="release-shadow"),
    path("releases/<int:release_id>/shadow/start", pages.start_shadow, name="release-shadow-start"),
    path("shadow/<int:run_id>/stop", pages.stop_shadow, name="shadow-stop"),
]
