"""Streams uploaded files into the artifact store's staging area while computing their sha256.

Memory stays flat whatever the file's size: Django hands us chunks and we pass them straight to
the store (a temp file for the filesystem store, a multipart upload for S3), so every web process
and worker sees the same objects. Files over SLIPWAY_MAX_UPLOAD_BYTES stop the request with 413,
and an interrupted upload is aborted: nothing half-stored.

Only the builds endpoint installs this handler, after its token is checked (`streaming_to_store`);
every other URL keeps Django's default handlers. Parts a crashed process left behind are swept on
a schedule (`sweep_staging`).
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from rest_framework import status
from rest_framework.exceptions import APIException

from releases.storage import ArtifactStore, Staged, get_store
from releases.storage.base import Writer

log = logging.getLogger(__name__)


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


class HashedUpload(UploadedFile):
    """A finished upload: an object staged in the store, its sha256 and size."""

    size: int

    def __init__(self, store: ArtifactStore, staged: Staged, name: str, content_type: str) -> None:
        super().__init__(store.open_staged(staged), name, content_type, staged.size)
        self.store, self.staged, self.sha256 = store, staged, staged.sha256
        self.committed = False

    def commit(self) -> bool:
        """Move the object under its sha256. Returns True when it is new to the store."""
        self.close()
        new = self.store.commit(self.staged)
        self.committed = True
        return new

    def discard(self) -> None:
        self.close()
        if not self.committed:
            self.store.discard_staged(self.staged)


class HashingUploadHandler(FileUploadHandler):
    chunk_size = 256 * 1024

    def __init__(self, request=None) -> None:  # noqa: ANN001
        super().__init__(request)
        self.limit = settings.SLIPWAY_MAX_UPLOAD_BYTES
        self.store = get_store()
        self.writer: Writer | None = None
        self.uploads: list[HashedUpload] = []

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.writer = self.store.writer()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.writer is not None, "new_file() opens the writer"
        if self.writer.size + len(raw_data) > self.limit:
            self.cleanup()
            raise UploadTooLarge(f"{self.field_name} is larger than the limit of {self.limit} bytes")
        self.writer.write(raw_data)

    def file_complete(self, file_size: int) -> HashedUpload:
        assert self.writer is not None, "new_file() opens the writer"
        staged, self.writer = self.writer.finish(), None
        self.uploads.append(HashedUpload(self.store, staged, self.file_name or "", self.content_type or ""))
        return self.uploads[-1]

    def upload_interrupted(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Drop every object of this request that was not committed to the store."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        for upload in self.uploads:
            upload.discard()


@contextmanager
def streaming_to_store(request: HttpRequest) -> Iterator[None]:
    """While inside, files of this request's multipart body stream into the store's staging area;
    whatever was not committed by the end is dropped."""
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        yield
    finally:
        handler.cleanup()


def sweep_staging() -> int:
    """Drop staged uploads older than SLIPWAY_STAGING_MAX_AGE_S (their request died). Returns how many."""
    swept = get_store().sweep_staging(settings.SLIPWAY_STAGING_MAX_AGE_S)
    if swept:
        log.info("swept %d unfinished uploads from the artifact store's staging area", swept)
    return swept
