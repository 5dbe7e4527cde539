"""Configuration mistakes caught at start-up by Django's system checks."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def slipway_settings(app_configs, **kwargs) -> list:  # noqa: ANN001
    problems: list[Error | Warning] = []
    if settings.SLIPWAY_MAX_UPLOAD_BYTES <= 0:
        problems.append(Error("SLIPWAY_MAX_UPLOAD_BYTES must be positive", id="slipway.E001"))
    if settings.SLIPWAY_ACCELERATED_QUEUE not in ("auto", "cpu", "gpu"):
        problems.append(Error("SLIPWAY_ACCELERATED_QUEUE must be auto, cpu or gpu", id="slipway.E002"))
    if not settings.REDIS_URL and settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        problems.append(Warning("PostgreSQL is configured but REDIS_URL is not: the embedded broker (a redis-server "
                                "on a unix socket in the data folder) only reaches workers on this machine",
                                id="slipway.W001"))
    problems += _store_problems()
    return problems


def _store_problems() -> list:
    if settings.SLIPWAY_STORE not in ("fs", "s3"):
        return [Error(f"SLIPWAY_STORE must be fs or s3, not {settings.SLIPWAY_STORE!r}", id="slipway.E003")]
    if settings.SLIPWAY_STORE == "s3" and not settings.SLIPWAY_S3_BUCKET:
        return [Error("SLIPWAY_STORE=s3 needs SLIPWAY_S3_BUCKET", id="slipway.E004")]
    if settings.SLIPWAY_STORE == "s3" and settings.SLIPWAY_S3_PART_BYTES < 5 * 1024**2:
        return [Error("SLIPWAY_S3_PART_BYTES must be at least 5 MiB (S3's smallest part)", id="slipway.E005")]
    return []
