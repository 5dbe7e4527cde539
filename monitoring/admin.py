from django.contrib import admin

from monitoring import models as m


@admin.register(m.MonitoringPolicy)
class MonitoringPolicyAdmin(admin.ModelAdmin):
    list_display = ["model", "on_alert", "cooldown_seconds"]


@admin.register(m.AlertAction)
class AlertActionAdmin(admin.ModelAdmin):
    list_display = ["at", "alertname", "environment", "release", "action"]
    list_filter = ["action", "environment"]
    readonly_fields = ["environment", "release", "alertname", "fingerprint", "at", "action", "detail"]


@admin.register(m.ShadowRun)
class ShadowRunAdmin(admin.ModelAdmin):
    list_display = ["shadow", "active", "service", "share", "verdict", "started_at", "stopped_at"]
    list_filter = ["verdict", "service__environment"]
    readonly_fields = ["service", "active", "shadow", "share", "instance", "figures", "verdict", "reason",
                       "started_at", "stopped_at"]
