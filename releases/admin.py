from django.contrib import admin, messages

from releases import models as m


@admin.register(m.Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "created_at"]
    search_fields = ["name"]


@admin.register(m.ReleasePolicy)
class ReleasePolicyAdmin(admin.ModelAdmin):
    list_display = ["model", "required_approvals", "approver_group", "accuracy_budget"]


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["model", "label", "git_commit", "author", "created_at"]
    list_filter = ["model"]
    readonly_fields = ["artifact", "eval_data", "author", "idempotency_key"]


@admin.register(m.Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "sha256", "size_bytes", "release"]
    list_filter = ["kind"]
    readonly_fields = ["sha256", "size_bytes", "parent", "release"]


class StageInline(admin.TabularInline):
    model = m.StageRun
    extra = 0
    fields = ["name", "status", "attempt", "worker_host", "device", "progress", "error"]
    readonly_fields = ["name", "status", "attempt", "worker_host", "device", "progress", "error"]
    can_delete = False


@admin.register(m.Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["id", "version", "status", "created_at"]
    list_filter = ["status"]
    inlines = [StageInline]
    # Status changes go through the state machine (the pages and the API), never a form.
    readonly_fields = ["version", "status", "chosen_artifact", "choice_reasons", "failure_reason"]


@admin.register(m.StageRun)
class StageRunAdmin(admin.ModelAdmin):
    list_display = ["release", "name", "status", "attempt", "worker_host", "device"]
    list_filter = ["status", "name"]
    readonly_fields = [f.name for f in m.StageRun._meta.fields]


@admin.register(m.Metric)
class MetricAdmin(admin.ModelAdmin):
    list_display = ["release", "artifact", "name", "value", "unit"]
    list_filter = ["name"]


@admin.register(m.GateCheck)
class GateCheckAdmin(admin.ModelAdmin):
    list_display = ["release", "gate", "name", "measured", "comparator", "threshold", "passed"]


@admin.register(m.Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = ["release", "gate", "user", "decision", "created_at"]
    readonly_fields = ["release", "gate", "user", "decision", "comment"]


@admin.register(m.Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "target", "proxy_port", "requires_approval"]


@admin.register(m.Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["service", "release", "role", "traffic_percent", "updated_at"]
    readonly_fields = [f.name for f in m.Deployment._meta.fields]


@admin.register(m.Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["model", "environment", "created_at"]


@admin.register(m.Canary)
class CanaryAdmin(admin.ModelAdmin):
    list_display = ["deployment", "status", "started_at", "ends_at", "canary_requests", "requests_needed"]
    readonly_fields = [f.name for f in m.Canary._meta.fields]


@admin.register(m.TrafficChange)
class TrafficChangeAdmin(admin.ModelAdmin):
    list_display = ["service", "at", "action", "shares", "actor"]
    readonly_fields = [f.name for f in m.TrafficChange._meta.fields]


@admin.register(m.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_label", "action", "subject", "release"]
    list_filter = ["action"]
    readonly_fields = [f.name for f in m.AuditEvent._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(m.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked"]
    fields = ["user", "name", "scopes", "bound_models", "bound_environments", "expires_at", "revoked", "prefix",
              "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def save_model(self, request, obj: m.ApiToken, form, change: bool) -> None:  # noqa: ANN001
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = m.ApiToken.issue(obj.user, obj.name, obj.scopes, obj.expires_at or m.tokens.NOT_GIVEN,
                                      models=obj.bound_models, environments=obj.bound_environments)
        obj.pk = token.pk
        messages.warning(request, f"Token for {obj.user}: {raw} — copy it now; it is not shown again.")


@admin.register(m.ServingSample)
class ServingSampleAdmin(admin.ModelAdmin):
    list_display = ["service", "release", "at", "requests_per_s", "error_rate", "latency_p95_ms"]
