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
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest
from rest_framework import status
from rest_framework.exceptions import APIException

from releases.request_body import BodyIncomplete, BodyTooLarge, body_chunks, declared_length
from releases.storage import ArtifactStore, Staged, get_store
from releases.storage.base import Writer

log = logging.getLogger(__name__)


class BadUpload(ValueError):
    """An upload that can never be used; the API answers 400 with the message."""


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


class Staging:
    """The objects one request streams into the store's staging area, one after another, together at
    most SLIPWAY_MAX_UPLOAD_BYTES; whatever is not committed is dropped by `cleanup`."""

    def __init__(self) -> None:
        self.limit = settings.SLIPWAY_MAX_UPLOAD_BYTES
        self.store = get_store()
        self.received = 0
        self.writer: Writer | None = None
        self.uploads: list[HashedUpload] = []

    def too_large(self) -> UploadTooLarge:
        return UploadTooLarge(f"the build (artifact and eval_data together) is larger than the limit of "
                              f"{self.limit} bytes")

    def open(self) -> None:
        self.writer = self.store.writer()

    def write(self, chunk: bytes | memoryview) -> None:
        assert self.writer is not None, "open() opens the writer"
        self.received += len(chunk)
        if self.received > self.limit:
            self.cleanup()
            raise self.too_large()
        self.writer.write(chunk)

    def close(self, name: str, content_type: str = "") -> HashedUpload:
        assert self.writer is not None, "open() opens the writer"
        staged, self.writer = self.writer.finish(), None
        self.uploads.append(HashedUpload(self.store, staged, name, content_type))
        return self.uploads[-1]

    def cleanup(self) -> None:
        """Drop every object of this request that was not committed to the store."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        for upload in self.uploads:
            upload.discard()


class HashingUploadHandler(FileUploadHandler):
    chunk_size = 1024 * 1024  # Django's parser copies each chunk; larger ones cost more (fresh memory each time)

    def __init__(self, request=None) -> None:  # noqa: ANN001
        super().__init__(request)
        self.staging = Staging()

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.staging.open()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.staging.write(raw_data)

    def file_complete(self, file_size: int) -> HashedUpload:
        return self.staging.close(self.file_name or "", self.content_type or "")

    def upload_interrupted(self) -> None:
        self.staging.cleanup()


@contextmanager
def streaming_to_store(request: HttpRequest) -> Iterator[None]:
    """While inside, files of this request's multipart body stream into the store's staging area;
    whatever was not committed by the end is dropped."""
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        yield
    finally:
        handler.staging.cleanup()


@dataclass(frozen=True)
class StreamedBuild:
    """How a build's raw body (`PUT /api/v1/builds/`) is laid out: ``metadata_bytes`` of metadata JSON,
    ``eval_data_bytes`` of evaluation data, then the artifact's bytes."""

    artifact_name: str
    eval_data_name: str
    eval_data_bytes: int
    metadata_bytes: int = 0


class StreamedBody:
    """A raw build body as it arrives: its metadata prefix first, read into memory (so the caller can
    refuse it before a file byte is stored), then its two files, streamed into the store's staging area."""

    def __init__(self, request: HttpRequest, layout: StreamedBuild, staging: Staging) -> None:
        self.layout, self.staging = layout, staging
        splits = (layout.metadata_bytes, layout.metadata_bytes + layout.eval_data_bytes)
        self.chunks = body_chunks(request.META, staging.limit, splits)
        self.prefix: bytes | None = None

    def metadata(self) -> bytes:
        """The body's first ``metadata_bytes`` bytes (the caller bounded them: SLIPWAY_MAX_METADATA_BYTES)."""
        prefix = bytearray()
        with self._reading():
            while len(prefix) < self.layout.metadata_bytes:
                chunk = next(self.chunks, None)
                if chunk is None:
                    raise BadUpload(f"the body is {len(prefix)} bytes, shorter than metadata_bytes "
                                    f"({self.layout.metadata_bytes})")
                prefix += chunk  # no chunk spans the prefix's end
        self.prefix = bytes(prefix)
        return self.prefix

    def files(self) -> tuple[HashedUpload, HashedUpload]:
        """The rest of the body in the store's staging area: (artifact, eval_data)."""
        assert self.prefix is not None, "metadata() reads the body's first bytes"
        layout, staging = self.layout, self.staging
        staging.open()
        eval_data = None
        with self._reading():
            for chunk in self.chunks:
                staging.write(chunk)
                if eval_data is None and staging.received == layout.eval_data_bytes:  # no chunk spans the split
                    eval_data = staging.close(layout.eval_data_name)
                    staging.open()
        if eval_data is None:
            raise BadUpload(f"the body is {layout.metadata_bytes + staging.received} bytes, shorter than "
                            f"metadata_bytes + eval_data_bytes ({layout.metadata_bytes} + {layout.eval_data_bytes})")
        return staging.close(layout.artifact_name), eval_data

    @contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except BodyTooLarge:
            raise self.staging.too_large() from None
        except BodyIncomplete as exc:
            raise BadUpload(str(exc)) from None


@contextmanager
def streamed_build(request: HttpRequest, layout: StreamedBuild) -> Iterator[StreamedBody]:
    """Receive a raw build body: its metadata, then (artifact, eval_data) staged in the store, dropped by
    the end unless committed. A declared length over the limit is refused before a byte is read; a body
    left part-read (its metadata refused) goes back to the server to discard."""
    staging = Staging()
    declared = declared_length(request.META)
    if declared is not None and declared > staging.limit:
        raise staging.too_large()
    body = StreamedBody(request, layout, staging)
    try:
        yield body
    finally:
        body.chunks.close()
        staging.cleanup()


def sweep_staging() -> int:
    """Drop staged uploads older than SLIPWAY_STAGING_MAX_AGE_S (their request died). Returns how many."""
    swept = get_store().sweep_staging(settings.SLIPWAY_STAGING_MAX_AGE_S)
    if swept:
        log.info("swept %d unfinished uploads from the artifact store's staging area", swept)
    return swept
