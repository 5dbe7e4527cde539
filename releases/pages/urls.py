from django.urls import path

from releases.pages import views

urlpatterns = [
    path("", views.home, name="home"),
    path("models/", views.model_list, name="models"),
    path("models/<str:name>/", views.model_detail, name="model"),
    path("releases/<int:release_id>/", views.release_detail, name="release"),
    path("releases/<int:release_id>/live/", views.release_live, name="release-live"),
    path("releases/<int:release_id>/decide/", views.release_decide, name="release-decide"),
]
