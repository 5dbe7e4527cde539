from django.urls import path

from webhooks.pages import views

urlpatterns = [
    path("", views.subscription_list, name="webhooks"),
    path("new/", views.subscription_create, name="webhook-create"),
    path("<int:subscription_id>/", views.subscription_detail, name="webhook"),
    path("<int:subscription_id>/deliveries/<int:delivery_id>/redeliver/", views.redeliver,
         name="webhook-redeliver"),
]
