from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Slipway webhooks"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from releases.models import AuditEvent
        from webhooks.deliveries import on_audit_event

        post_save.connect(on_audit_event, sender=AuditEvent, dispatch_uid="webhooks.on_audit_event")
