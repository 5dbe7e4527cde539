"""The S3 store: any S3-compatible object storage (AWS S3, MinIO, Ceph, moto's server in the tests).

Objects live at {prefix}objects/ab/abcdef…; an upload streams into {prefix}staging/<uuid> as a
multipart upload (parts of SLIPWAY_S3_PART_BYTES, hashed on the way; aborted on failure), and
commit copies it under its sha256 on the server side and deletes the staging object. Workers read
through presigned GET URLs into a local cache keyed by sha256, checking the hash of what arrives.
Credentials come from boto3's usual places (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, a profile, an
instance role). Leftover staging objects and multipart uploads of crashed processes are swept on a schedule
(sweep_staging); a lifecycle rule on `staging/` is a good second net.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import boto3
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from typing_extensions import Buffer

from releases.storage.base import COPY_CHUNK, ArtifactStore, Staged, StoreError, Writer, object_key

DOWNLOAD_TIMEOUT_S = 60


@functools.lru_cache(maxsize=8)
def client(endpoint_url: str | None):  # noqa: ANN201 - botocore's generated S3 client class
    style = "path" if endpoint_url else "auto"
    return boto3.client("s3", endpoint_url=endpoint_url,
                        config=Config(signature_version="s3v4", s3={"addressing_style": style},
                                      retries={"mode": "standard", "max_attempts": 5}))


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


@functools.cache
def _part_senders() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-part")


os.register_at_fork(after_in_child=_part_senders.cache_clear)  # a forked child has none of its parent's threads


class S3Writer(Writer):
    """Buffers one part at a time; a small object is one PUT, a large one a multipart upload whose parts
    go up on another thread while the next part arrives (one part in flight: memory stays ~2 parts)."""

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__()
        self.store, self.key = store, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.in_flight: tuple[int, Future] | None = None

    def _write(self, chunk: bytes | memoryview) -> None:
        self.buffer += chunk
        while len(self.buffer) >= self.store.part_bytes:
            self._send_part(bytes(self.buffer[:self.store.part_bytes]))
            del self.buffer[:self.store.part_bytes]

    def _send_part(self, data: bytes) -> None:
        s3 = self.store.client
        self._wait_for_part()
        if self.upload_id is None:
            self.upload_id = s3.create_multipart_upload(Bucket=self.store.bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        self.in_flight = number, _part_senders().submit(
            s3.upload_part, Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
            Body=data)

    def _wait_for_part(self) -> None:
        if self.in_flight is not None:
            (number, sending), self.in_flight = self.in_flight, None
            self.parts.append({"PartNumber": number, "ETag": sending.result()["ETag"]})

    def _finish(self) -> Staged:
        s3 = self.store.client
        try:
            if self.upload_id is None:
                s3.put_object(Bucket=self.store.bucket, Key=self.key, Body=bytes(self.buffer))
            else:
                if self.buffer:
                    self._send_part(bytes(self.buffer))
                self._wait_for_part()
                s3.complete_multipart_upload(Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id,
                                             MultipartUpload={"Parts": self.parts})
        except BaseException:
            self.abort()
            raise
        self.buffer = bytearray()
        return Staged(self.key, self.hash.hexdigest(), self.size)

    def _abort(self) -> None:
        self.buffer = bytearray()
        if self.in_flight is not None:
            wait([self.in_flight[1]])  # its part is dropped with the upload below
            self.in_flight = None
        if self.upload_id is not None:
            self.store.client.abort_multipart_upload(Bucket=self.store.bucket, Key=self.key,
                                                     UploadId=self.upload_id)
            self.upload_id = None
        self.store.client.delete_object(Bucket=self.store.bucket, Key=self.key)


class RangeReader(io.RawIOBase):
    """A seekable file over one S3 object, read with ranged GETs (zipfile needs to seek)."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key, self.pos = store, key, 0
        try:
            self.length = store.client.head_object(Bucket=store.bucket, Key=key)["ContentLength"]
        except ClientError as error:
            if _missing(error):
                raise StoreError(f"no object {key} in bucket {store.bucket}") from None
            raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = max(base + offset, 0)
        return self.pos

    def readinto(self, into: Buffer) -> int:
        buffer = memoryview(into).cast("B")
        if self.pos >= self.length or len(buffer) == 0:
            return 0
        end = min(self.pos + len(buffer), self.length) - 1
        body = self.store.client.get_object(Bucket=self.store.bucket, Key=self.key,
                                            Range=f"bytes={self.pos}-{end}")["Body"].read()
        buffer[:len(body)] = body
        self.pos += len(body)
        return len(body)


class S3Store(ArtifactStore):
    kind = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None, prefix: str, part_bytes: int,
                 cache_dir: Path, url_expires_s: int) -> None:
        if not bucket:
            raise StoreError("SLIPWAY_STORE=s3 needs SLIPWAY_S3_BUCKET")
        self.bucket, self.endpoint_url = bucket, endpoint_url
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_bytes, self.cache_dir, self.url_expires_s = part_bytes, cache_dir, url_expires_s
        self.client = client(endpoint_url)

    def key_for(self, sha256: str) -> str:
        return self.prefix + object_key(sha256)

    def writer(self) -> S3Writer:
        return S3Writer(self, f"{self.prefix}staging/{uuid.uuid4().hex}")

    def open_staged(self, staged: Staged) -> BinaryIO:
        return io.BufferedReader(RangeReader(self, staged.location), buffer_size=COPY_CHUNK)

    def commit(self, staged: Staged) -> bool:
        new = not self.exists(staged.sha256)
        if new:
            config = TransferConfig(multipart_threshold=self.part_bytes, multipart_chunksize=self.part_bytes)
            self.client.copy({"Bucket": self.bucket, "Key": staged.location}, self.bucket,
                             self.key_for(staged.sha256), Config=config)
        self.discard_staged(staged)
        return new

    def discard_staged(self, staged: Staged) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=staged.location)

    def sweep_staging(self, older_than_s: float) -> int:
        """Abort multipart uploads begun, and delete staged objects written, before the cut-off."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        staging, swept = f"{self.prefix}staging/", 0
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=staging):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    swept += 1
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=staging):
            for item in page.get("Contents", []):
                if item["LastModified"] < cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    swept += 1
        return swept

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as error:
            if _missing(error):
                return False
            raise
        return True

    def open(self, sha256: str) -> BinaryIO:
        return io.BufferedReader(RangeReader(self, self.key_for(sha256)), buffer_size=COPY_CHUNK)

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))

    def download_url(self, sha256: str, expires_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key_for(sha256)}, ExpiresIn=expires_s)

    def local_path(self, sha256: str) -> Path:
        """The object in this machine's cache, downloaded through a presigned URL when missing."""
        path = self.cache_dir / object_key(sha256)
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{sha256}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        try:
            with requests.get(self.download_url(sha256, self.url_expires_s), stream=True,
                              timeout=DOWNLOAD_TIMEOUT_S) as answer:
                if answer.status_code == 404:
                    raise StoreError(f"no object {sha256} in bucket {self.bucket}")
                if answer.status_code != 200:
                    raise StoreError(f"downloading {sha256} from bucket {self.bucket}: HTTP {answer.status_code}")
                with open(partial, "wb") as out:
                    for chunk in answer.iter_content(COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != sha256:
                raise StoreError(f"object {sha256} in bucket {self.bucket} has sha256 {digest.hexdigest()}")
            partial.chmod(0o444)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path
