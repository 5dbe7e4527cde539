"""Streams uploaded files into the artifact store's tmp/ while computing their sha256.

Memory stays flat whatever the file's size: Django hands us chunks and we write them straight to
disk. Files over SLIPWAY_MAX_UPLOAD_BYTES stop the request with 413.
"""

import hashlib
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework import status
from rest_framework.exceptions import APIException

from releases import store


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "upload_too_large"


class HashedUpload(UploadedFile):
    """A finished upload: a temp file in the store, its sha256 and size."""

    def __init__(self, temp_path: Path, name: str, content_type: str, size: int, sha256: str) -> None:
        super().__init__(open(temp_path, "rb"), name, content_type, size)  # noqa: SIM115
        self.temp_path = temp_path
        self.sha256 = sha256

    def temporary_file_path(self) -> str:
        return str(self.temp_path)

    def discard(self) -> None:
        self.close()
        self.temp_path.unlink(missing_ok=True)


class HashingUploadHandler(FileUploadHandler):
    chunk_size = 256 * 1024

    def __init__(self, request=None) -> None:  # noqa: ANN001
        super().__init__(request)
        self.limit = settings.SLIPWAY_MAX_UPLOAD_BYTES
        self.temp_paths: list[Path] = []

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:  # noqa: ANN001
        # The body holds every file and field, so it may be a little over one file's limit.
        if content_length and content_length > 2 * self.limit + settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise UploadTooLarge(f"the request body is {content_length} bytes; each file may be at most "
                                 f"{self.limit} bytes")

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.temp_path = store.new_temp_path()
        self.temp_paths.append(self.temp_path)
        self.file = open(self.temp_path, "wb")  # noqa: SIM115
        self.hash = hashlib.sha256()
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        if self.size > self.limit:
            self.cleanup()
            raise UploadTooLarge(f"{self.field_name} is larger than the limit of {self.limit} bytes")
        self.hash.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> HashedUpload:
        self.file.close()
        return HashedUpload(self.temp_path, self.file_name, self.content_type, self.size, self.hash.hexdigest())

    def upload_interrupted(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Remove every temp file of this request that was not moved into the store."""
        if getattr(self, "file", None) is not None:
            self.file.close()
        for path in self.temp_paths:
            path.unlink(missing_ok=True)
