"""The artifact store chosen by settings: SLIPWAY_STORE=fs (default) or s3. See base.ArtifactStore."""

from pathlib import Path

from django.conf import settings

from releases.storage.base import ArtifactStore, Staged, StoreError
from releases.storage.filesystem import FilesystemStore

__all__ = ["ArtifactStore", "Staged", "StoreError", "get_store", "work_root"]


def get_store() -> ArtifactStore:
    """The store of the current settings (read on each call: tests change them)."""
    if settings.SLIPWAY_STORE == "s3":
        from releases.storage.s3 import S3Store

        return S3Store(settings.SLIPWAY_S3_BUCKET, endpoint_url=settings.SLIPWAY_S3_ENDPOINT_URL or None,
                       prefix=settings.SLIPWAY_S3_PREFIX, part_bytes=settings.SLIPWAY_S3_PART_BYTES,
                       cache_dir=settings.SLIPWAY_CACHE_DIR, url_expires_s=settings.SLIPWAY_S3_URL_SECONDS)
    if settings.SLIPWAY_STORE != "fs":
        raise StoreError(f"SLIPWAY_STORE must be fs or s3, not {settings.SLIPWAY_STORE!r}")
    return FilesystemStore(settings.ARTIFACT_DIR)


def work_root() -> Path:
    """This machine's scratch folder for stage work (never shared between machines)."""
    return settings.ARTIFACT_DIR / "work"
