"""The artifact store interface: content-addressed objects (by sha256), written as streams.

A writer receives an object's bytes chunk by chunk and hashes them on the way into a staging
place that no reader looks at; `commit` moves a finished object under its sha256, `discard_staged`
drops it. So a failed request leaves nothing half-stored, and two uploads of the same bytes make
one object. Workers never read the web machine's disk: `local_path` gives them a file on their
own machine (the object itself for the filesystem store, a verified cached download for S3).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
COPY_CHUNK = 1024 * 1024
HASH_ASIDE_BYTES = 64 * 1024  # chunks at least this large are hashed and written on other threads


@functools.cache
def _hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="sha256")


os.register_at_fork(after_in_child=_hasher.cache_clear)  # a forked child has none of its parent's threads


class StoreError(RuntimeError):
    """The store refused or lost an object."""


def check_sha256(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return sha256


def object_key(sha256: str) -> str:
    """Where an object lives inside a store: objects/ab/abcdef…"""
    return f"objects/{check_sha256(sha256)[:2]}/{sha256}"


@dataclass(frozen=True)
class Staged:
    """A finished, not yet committed object: where it waits, its sha256 and size."""

    location: str
    sha256: str
    size: int


class Writer(ABC):
    """Receives one object's bytes; computes its sha256 on the way.

    A large chunk is hashed and written on other threads (both release the GIL) while the caller
    gets the next one: `write` returns once the chunk before is hashed and written, so the caller
    may then reuse that chunk's buffer (double buffering), never the one just handed over. An upload
    takes the longest of receiving, hashing and writing per chunk rather than their sum. `finish`
    and `abort` first wait for the last chunk; an error of a chunk's write comes out of the next
    `write` or `finish`."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._pending: list[Future] = []

    def write(self, chunk: bytes | memoryview) -> None:
        self._settle()
        self.size += len(chunk)
        if len(chunk) < HASH_ASIDE_BYTES:
            self.hash.update(chunk)
            self._write(chunk)
            return
        self._pending = [_hasher().submit(self.hash.update, chunk), _hasher().submit(self._write, chunk)]

    def _settle(self) -> None:
        """Wait for the chunk in hand (its hash and its write); raise the first error of either."""
        pending, self._pending = self._pending, []
        wait(pending)
        for job in pending:
            job.result()

    def finish(self) -> Staged:
        """Close the object; it waits in staging until committed or discarded."""
        try:
            self._settle()
        except BaseException:
            self.abort()
            raise
        return self._finish()

    def abort(self) -> None:
        """Drop everything written so far (an interrupted upload)."""
        pending, self._pending = self._pending, []
        wait(pending)  # a write still running must not meet a closed file; its error goes with the object
        self._abort()

    @abstractmethod
    def _write(self, chunk: bytes | memoryview) -> None: ...

    @abstractmethod
    def _finish(self) -> Staged: ...

    @abstractmethod
    def _abort(self) -> None: ...


class ArtifactStore(ABC):
    kind: str

    @abstractmethod
    def writer(self) -> Writer: ...

    @abstractmethod
    def open_staged(self, staged: Staged) -> BinaryIO:
        """A seekable read-only file of a staged object (the web's cheap checks read it)."""

    @abstractmethod
    def commit(self, staged: Staged) -> bool:
        """Move a staged object under its sha256. Returns True when the object is new."""

    @abstractmethod
    def discard_staged(self, staged: Staged) -> None: ...

    @abstractmethod
    def sweep_staging(self, older_than_s: float) -> int:
        """Drop staged objects and unfinished uploads untouched for older_than_s seconds. Returns how many."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """Read an object as a stream."""

    @abstractmethod
    def delete(self, sha256: str) -> None: ...

    @abstractmethod
    def download_url(self, sha256: str, expires_s: int) -> str:
        """A URL from which the object can be read without credentials until it expires."""

    @abstractmethod
    def local_path(self, sha256: str) -> Path:
        """A read-only file of the object on this machine."""

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file made on this machine (hashing on the way). Returns (sha256, size)."""
        writer = self.writer()
        try:
            with open(path, "rb") as source:
                while chunk := source.read(COPY_CHUNK):
                    writer.write(chunk)
            staged = writer.finish()
        except BaseException:
            writer.abort()
            raise
        self.commit(staged)
        return staged.sha256, staged.size
