"""Package one release as an OCI image: serving runtime plus the chosen ONNX artifact.

Layers, from the bottom: base image → Python dependencies (a cached image of their own, built
from wheels downloaded on the host) → serving code → model. Only the model layer changes from
one release to the next, so a release build sends and writes little more than the model file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound
from docker.models.images import Image

import serving
from serving.integrity import file_sha256

SERVING_DIR = Path(serving.__file__).resolve().parent
REQUIREMENTS = SERVING_DIR / "requirements.txt"
DOCKER_DIR = Path(__file__).resolve().parents[1] / "deploy" / "docker"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slipway"
DEPS_REPOSITORY = "slipway-serving-deps"
RELEASE_REPOSITORY = "slipway-release"
SERVING_USER = "10001:10001"
LABEL_PREFIX = "io.slipway."


class ImageBuildError(RuntimeError):
    """The artifact does not match its sha256, or Docker Engine could not build the image."""


@dataclass(frozen=True)
class ReleaseImageSpec:
    release_id: str
    model_name: str
    version: str
    model_path: Path
    sha256: str
    base_image: str = DEFAULT_BASE_IMAGE
    cache_dir: Path = DEFAULT_CACHE_DIR
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    profile_path: Path | None = None  # the monitoring profile (serving/watch.py), baked in beside the model


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str  # content digest of the image configuration ("sha256:..."); stable for the release
    size_bytes: int
    labels: dict[str, str]
    seconds: float


def _tag_part(text: str) -> str:
    """Docker tags allow [A-Za-z0-9_.-], at most 128 characters, not starting with '.' or '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text).lstrip(".-")[:128] or "x"


def download_wheels(cache_dir: Path, requirements: Path = REQUIREMENTS, *, dependencies: bool = False) -> Path:
    """Download wheels once per requirements file (the serving runtime's by default); return their folder.

    Uses pip's configured index. Wheels are for the host's Python, which must match the base
    image's (3.11 for both defaults). Only the listed wheels unless ``dependencies`` (the serving
    list pins the whole runtime); the folder's name changes with the list and with that choice.
    """
    exact = [] if dependencies else ["--no-deps"]
    key = hashlib.sha256(requirements.read_bytes() + " ".join(exact).encode()).hexdigest()[:16]
    wheels = cache_dir / "wheels" / key
    if wheels.is_dir():
        return wheels
    wheels.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=wheels.parent))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                *exact,
                "--dest",
                str(staging),
                "-r",
                str(requirements),
            ],
            check=True,
        )
        shutil.copyfile(requirements, staging / "requirements.txt")
        staging.rename(wheels)  # atomic: a folder under its final name is always complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return wheels


def _add(archive: tarfile.TarFile, name: str, source: Path | bytes) -> None:
    """Add a regular file owned by root, world-readable, with a fixed mtime (reproducible layers)."""
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if isinstance(source, bytes):
        info.size = len(source)
        archive.addfile(info, io.BytesIO(source))
        return
    info.size = source.stat().st_size
    with source.open("rb") as handle:
        archive.addfile(info, handle)


def _build(
    client: docker.DockerClient,
    files: Mapping[str, Path | bytes],
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str] | None = None,
) -> Image:
    """Build from a context of ``files`` (tar entries in the given order) sent as one uncompressed tar."""
    with tempfile.TemporaryFile() as context:
        with tarfile.open(fileobj=context, mode="w") as archive:
            for name, source in files.items():
                _add(archive, name, source)
        context.seek(0)
        try:
            built, _logs = client.images.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs=buildargs,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
            )
        except BuildError as error:
            log = "".join(str(entry.get("stream", entry.get("error", ""))) for entry in error.build_log)
            raise ImageBuildError(f"building {tag} failed: {error.msg}\n{log[-4000:]}") from error
    return built


def ensure_deps_image(client: docker.DockerClient, base_image: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> str:
    """Return the tag of the image holding the serving runtime's dependencies, building it if needed.

    Its tag is derived from the base image id, the wheels and the Dockerfile, so it is rebuilt
    exactly when one of them changes.
    """
    try:
        base_id = client.images.get(base_image).id
    except ImageNotFound:
        raise ImageBuildError(
            f"base image {base_image} is not present; pull it, or build the local one with "
            "`python -m shipping.base_image`"
        ) from None
    wheels = sorted(download_wheels(cache_dir).iterdir())
    dockerfile = (DOCKER_DIR / "Dockerfile.deps").read_bytes()
    key = hashlib.sha256(base_id.encode() + dockerfile)
    for wheel in wheels:
        key.update(wheel.name.encode())
    tag = f"{DEPS_REPOSITORY}:{key.hexdigest()[:16]}"
    try:
        client.images.get(tag)
    except ImageNotFound:
        files: dict[str, Path | bytes] = {"Dockerfile": dockerfile}
        files.update({f"wheels/{wheel.name}": wheel for wheel in wheels})
        _build(client, files, tag, {"BASE_IMAGE": base_image})
    return tag


def release_labels(spec: ReleaseImageSpec) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}model": spec.model_name,
        f"{LABEL_PREFIX}version": spec.version,
        f"{LABEL_PREFIX}sha256": spec.sha256,
        f"{LABEL_PREFIX}release-id": spec.release_id,
        "org.opencontainers.image.title": spec.model_name,
        "org.opencontainers.image.version": spec.version,
        **spec.extra_labels,
    }


def build_release_image(client: docker.DockerClient, spec: ReleaseImageSpec) -> BuiltImage:
    """Build (or find, when identical) the image of one release; check the artifact's sha256 first."""
    started = time.perf_counter()
    actual = file_sha256(spec.model_path)
    if actual != spec.sha256.lower():
        raise ImageBuildError(f"{spec.model_path} has sha256 {actual}, but the release says {spec.sha256}")
    deps_tag = ensure_deps_image(client, spec.base_image, spec.cache_dir)
    tag = f"{RELEASE_REPOSITORY}:{_tag_part(f'{spec.model_name}-{spec.release_id}')}"
    labels = release_labels(spec)
    files: dict[str, Path | bytes] = {"Dockerfile": (DOCKER_DIR / "Dockerfile.release").read_bytes()}
    code = sorted(SERVING_DIR.rglob("*.py"))  # the runtime with its subpackages (serving/llm)
    files.update({f"serving/{path.relative_to(SERVING_DIR).as_posix()}": path for path in code})
    files["model/model.onnx"] = spec.model_path
    if spec.profile_path is not None:
        files["model/profile.json"] = spec.profile_path
    built = _build(
        client,
        files,
        tag,
        {
            "DEPS_IMAGE": deps_tag,
            "MODEL_NAME": spec.model_name,
            "MODEL_VERSION": spec.version,
            "MODEL_SHA256": spec.sha256,
            "RELEASE_ID": spec.release_id,
            "PROFILE": "/model/profile.json" if spec.profile_path is not None else "",
        },
        labels,
    )
    return BuiltImage(
        tag=tag, image_id=built.id, size_bytes=built.attrs["Size"], labels=labels, seconds=time.perf_counter() - started
    )
