"""The content-addressed artifact store on the filesystem: objects/ab/abcdef… by sha256.

Uploads are written to tmp/ first (hashing on the way) and moved into place with one rename, so a
reader never sees a partial object and a failed request leaves nothing behind.
"""

import hashlib
import os
import re
import uuid
from pathlib import Path

from django.conf import settings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def root() -> Path:
    return Path(settings.ARTIFACT_DIR)


def new_temp_path() -> Path:
    tmp = root() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / f"{uuid.uuid4().hex}.part"


def path_for(sha256: str) -> Path:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return root() / "objects" / sha256[:2] / sha256


def commit(temp_path: Path, sha256: str) -> bool:
    """Move a finished temp file into place. Returns True when the object is new."""
    target = path_for(sha256)
    if target.exists():
        temp_path.unlink(missing_ok=True)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target_tmp = target.with_suffix(".moving")
    os.replace(temp_path, target_tmp)
    target_tmp.chmod(0o444)
    os.replace(target_tmp, target)
    return True


def discard(sha256: str) -> None:
    path_for(sha256).unlink(missing_ok=True)


def put_file(path: Path) -> tuple[str, int]:
    """Copy a file made on this machine into the store (hashing on the way). Returns (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    temp = new_temp_path()
    with open(path, "rb") as source, open(temp, "wb") as target:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
            target.write(chunk)
            size += len(chunk)
    commit(temp, digest.hexdigest())
    return digest.hexdigest(), size
