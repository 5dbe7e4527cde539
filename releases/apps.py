from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Slipway releases"

    def ready(self) -> None:
        from releases import checks  # noqa: F401  (registers system checks)
