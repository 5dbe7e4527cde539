"""Configuration mistakes caught at start-up by Django's system checks."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def slipway_settings(app_configs, **kwargs) -> list:  # noqa: ANN001
    problems = []
    if settings.SLIPWAY_MAX_UPLOAD_BYTES <= 0:
        problems.append(Error("SLIPWAY_MAX_UPLOAD_BYTES must be positive", id="slipway.E001"))
    if settings.SLIPWAY_ACCELERATED_QUEUE not in ("cpu", "gpu"):
        problems.append(Error("SLIPWAY_ACCELERATED_QUEUE must be cpu or gpu", id="slipway.E002"))
    if settings.CELERY_BROKER_URL == "filesystem://" and settings.DATABASES["default"]["ENGINE"].endswith(
            "postgresql"):
        problems.append(Warning("PostgreSQL is configured but REDIS_URL is not: the filesystem broker only "
                                "works when web and workers share a disk", id="slipway.W001"))
    return problems
