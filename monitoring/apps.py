from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from monitoring.metrics import MonitoringCollector
        from monitoring.shadowing import drill_refusal
        from releases.drills import REFUSALS
        from releases.metrics import EXTRA_COLLECTORS

        if MonitoringCollector not in EXTRA_COLLECTORS:
            EXTRA_COLLECTORS.append(MonitoringCollector)
        if drill_refusal not in REFUSALS:
            REFUSALS.append(drill_refusal)
