from django.urls import path

from fleet import views

urlpatterns = [
    path("", views.worker_list, name="workers"),
    path("table/", views.worker_table, name="workers-table"),
]
