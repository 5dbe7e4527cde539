from django.urls import path

from monitoring import api

urlpatterns = [
    path("feedback/", api.FeedbackView.as_view(), name="feedback"),
    path("alerts/", api.AlertsView.as_view(), name="alerts"),
    path("models/<str:name>/monitoring/", api.PolicyView.as_view(), name="monitoring-policy"),
    path("environments/<str:environment>/models/<str:model>/shadow/", api.ShadowView.as_view(), name="shadow"),
]
