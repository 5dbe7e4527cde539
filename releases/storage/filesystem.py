"""The filesystem store: objects/ab/abcdef… under SLIPWAY_ARTIFACT_DIR, staged in tmp/.

A finished object is moved into place with one rename, so a reader never sees a partial object.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from releases.storage.base import ArtifactStore, Staged, StoreError, Writer, object_key

# How errors name the store: people read them (stage errors), and its folder is no business of theirs.
STORE_NAME = "the artifact store (SLIPWAY_ARTIFACT_DIR)"
O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux's; elsewhere every write goes through the page cache
BLOCK = 4096  # a direct write's size (and its file offset) is a multiple of this: any disk's block size


class FileWriter(Writer):
    """Writes whole blocks past the page cache (O_DIRECT) while it can, the rest through it.

    Copying a multi-GB upload into the page cache cost several times the CPU of hashing it (more
    the larger the cache grows), and the bytes are not read again soon. A direct write wants its
    memory, size and file offset aligned to the disk's blocks: the request body's reader hands over
    page-aligned buffers of whole blocks. From the first chunk that is not (a body's last one, a
    multipart upload's bytes, a file system without O_DIRECT), the file is written as usual."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            self.fd, self.direct = os.open(path, flags | O_DIRECT, 0o644), bool(O_DIRECT)
        except OSError:  # a file system without direct I/O (tmpfs on older kernels)
            self.fd, self.direct = os.open(path, flags, 0o644), False

    def _write(self, chunk: bytes | memoryview) -> None:
        if self.direct and len(chunk) % BLOCK:
            self._stop_direct()
        view = memoryview(chunk).cast("B")
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except OSError as exc:
                if not (self.direct and exc.errno == errno.EINVAL):  # EINVAL: memory not aligned for it
                    raise
                self._stop_direct()

    def _stop_direct(self) -> None:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~O_DIRECT)
        self.direct = False

    def _close(self) -> None:
        if self.fd >= 0:  # abort may follow a finish that failed
            os.close(self.fd)
            self.fd = -1

    def _finish(self) -> Staged:
        self._close()
        return Staged(str(self.path), self.hash.hexdigest(), self.size)

    def _abort(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)


class FilesystemStore(ArtifactStore):
    kind = "fs"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / object_key(sha256)

    def writer(self) -> FileWriter:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return FileWriter(tmp / f"{uuid.uuid4().hex}.part")

    def open_staged(self, staged: Staged) -> BinaryIO:
        return open(staged.location, "rb")

    def commit(self, staged: Staged) -> bool:
        temp, target = Path(staged.location), self.path_for(staged.sha256)
        if target.exists():
            temp.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        moving = target.with_suffix(".moving")
        os.replace(temp, moving)
        moving.chmod(0o444)
        os.replace(moving, target)
        return True

    def discard_staged(self, staged: Staged) -> None:
        Path(staged.location).unlink(missing_ok=True)

    def sweep_staging(self, older_than_s: float) -> int:
        cutoff, swept = time.time() - older_than_s, 0
        for part in (self.root / "tmp").glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    swept += 1
            except FileNotFoundError:
                continue  # its request finished meanwhile
        return swept

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_for(sha256), "rb")
        except FileNotFoundError:
            raise StoreError(f"no object {sha256} in {STORE_NAME}") from None

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def download_url(self, sha256: str, expires_s: int) -> str:
        """On one machine the object's own file is the download (file://; it never expires)."""
        return self.local_path(sha256).as_uri()

    def local_path(self, sha256: str) -> Path:
        path = self.path_for(sha256)
        if not path.is_file():
            raise StoreError(f"no object {sha256} in {STORE_NAME}")
        return path
