from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    verbose_name = "Slipway worker fleet"

    def ready(self) -> None:
        from fleet import signals  # noqa: F401  (connects the Celery worker signals)
