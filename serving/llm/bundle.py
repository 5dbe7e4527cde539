"""A language model as one artifact: an uncompressed tar of a flat folder, unpacked safely.

Only regular files with plain names are accepted (no links, devices, absolute paths or ``..``);
an optional single top-level folder is stripped. Nothing is executed or unpickled.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

TAR_MAGIC_OFFSET = 257
MAX_MEMBERS = 256


class BundleError(ValueError):
    """The tar is not a usable language-model bundle; the message says why."""


def is_tar(path: Path) -> bool:
    """True when the file is a POSIX (ustar) tar archive."""
    try:
        with path.open("rb") as handle:
            handle.seek(TAR_MAGIC_OFFSET)
            return handle.read(5) == b"ustar"
    except OSError:
        return False


def member_names(members: Iterable[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """Regular files by their name inside the bundle (a single top folder stripped); raise BundleError."""
    files: dict[str, tarfile.TarInfo] = {}
    tops: set[str] = set()
    for count, member in enumerate(members, start=1):
        if count > MAX_MEMBERS:
            raise BundleError(f"the tar holds more than {MAX_MEMBERS} entries")
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise BundleError(f"tar entry {member.name!r} points outside the folder")
        if member.isdir():
            continue
        if not member.isreg():
            raise BundleError(f"tar entry {member.name!r} is not a regular file (links and devices are refused)")
        parts = [p for p in path.parts if p != "."]
        if len(parts) > 2:
            raise BundleError(f"tar entry {member.name!r} is nested; put the files in one folder")
        if len(parts) == 2:
            tops.add(parts[0])
        files["/".join(parts)] = member
    if len(tops) > 1 or (tops and any("/" not in name for name in files)):
        raise BundleError("the tar must hold one folder's files (at its top or in a single folder)")
    return {name.rsplit("/", 1)[-1]: info for name, info in files.items()}


def unpack(archive: Path, destination: Path) -> Path:
    """Unpack the bundle's files flat into ``destination`` (created); returns it."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:") as tar:
            files = member_names(tar.getmembers())
            for name, info in files.items():
                source = tar.extractfile(info)
                if source is None:
                    raise BundleError(f"tar entry {info.name!r} cannot be read")
                with source, (destination / name).open("wb") as out:
                    while block := source.read(1 << 20):
                        out.write(block)
    except tarfile.TarError as exc:
        raise BundleError(f"not a readable uncompressed tar: {exc}") from exc
    return destination


def pack(folder: Path, archive: Path) -> Path:
    """Write ``folder``'s files (flat, sorted, no owner names or times) into an uncompressed tar."""
    with tarfile.open(archive, "w:", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return archive


def unpacked(archive: Path, cache_root: Path, sha256: str = "") -> Path:
    """The bundle unpacked once under ``cache_root`` (keyed by its sha256, computed when not given)."""
    if not sha256:
        digest = hashlib.sha256()
        with archive.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        sha256 = digest.hexdigest()
    folder = cache_root / sha256
    done = folder / ".unpacked"
    if not done.is_file():
        partial = cache_root / f"{sha256}.partial"
        if partial.exists():
            for stale in partial.iterdir():
                stale.unlink()
        unpack(archive, partial)
        (partial / ".unpacked").write_text("ok")
        if folder.exists():
            for stale in folder.iterdir():
                stale.unlink()
            folder.rmdir()
        partial.rename(folder)
    return folder
