from django.urls import path

from releases.pages import catalog, environment, health, home, release, service, tokens, workers

urlpatterns = [
    path("", home.home, name="home"),
    path("models/", catalog.model_list, name="models"),
    path("models/<str:name>/", catalog.model_detail, name="model"),
    path("releases/<int:release_id>/", release.release_detail, name="release"),
    path("releases/<int:release_id>/live/", release.release_live, name="release-live"),
    path("releases/<int:release_id>/decide/", release.release_decide, name="release-decide"),
    path("releases/<int:release_id>/pick/", release.release_pick, name="release-pick"),
    path("environments/", environment.environment_list, name="environments"),
    path("environments/<str:name>/", environment.environment_detail, name="environment"),
    path("environments/<str:name>/live/", environment.environment_live, name="environment-live"),
    path("environments/<str:name>/models/<str:model>/", service.service_detail, name="service"),
    path("environments/<str:name>/models/<str:model>/live/", service.service_live, name="service-live"),
    path("environments/<str:name>/models/<str:model>/rollback/", service.rollback, name="rollback"),
    path("environments/<str:name>/models/<str:model>/drill/", service.drill, name="drill"),
    path("environments/<str:name>/models/<str:model>/canary/", service.canary_decision, name="canary-decision"),
    path("health/", health.health, name="health"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("workers/", workers.worker_list, name="workers"),
    path("workers/table/", workers.worker_table, name="workers-table"),
]
