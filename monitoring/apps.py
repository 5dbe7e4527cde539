from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from monitoring.metrics import MonitoringCollector
        from releases.metrics import EXTRA_COLLECTORS

        if MonitoringCollector not in EXTRA_COLLECTORS:
            EXTRA_COLLECTORS.append(MonitoringCollector)
