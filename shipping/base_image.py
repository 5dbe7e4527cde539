"""A local base image made with debootstrap, for machines that cannot pull from an image registry.

Real deployments use an official base (``python:3.11-slim``, see image.DEFAULT_BASE_IMAGE);
here no registry is reachable, so a minimal Debian with Python 3.11 is bootstrapped from the
distribution's default mirror and imported into Docker Engine (about 95 s, done once).

    python -m shipping.base_image   # base (if missing) + the serving dependencies image
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound

from shipping import image

LOCAL_BASE_IMAGE = "slipway-base:bookworm"


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def build_local_base_image(
    client: docker.DockerClient, tag: str = LOCAL_BASE_IMAGE, suite: str = "bookworm", force: bool = False
) -> str:
    """Bootstrap ``suite`` with python3 and python3-venv and import it as ``tag``; return the image id.

    Does nothing (but return the id) when ``tag`` exists, unless ``force``. Needs root and debootstrap.
    """
    if not force and image_exists(client, tag):
        return client.images.get(tag).id
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: apt-get install -y debootstrap")
    repository, _, version = tag.partition(":")
    with tempfile.TemporaryDirectory(prefix="slipway-base-") as workdir:
        rootfs, archive = Path(workdir, "rootfs"), Path(workdir, "rootfs.tar")
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", suite, str(rootfs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version or "latest", changes=['CMD ["python3"]']
        )
    return client.images.get(tag).id


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the local base image and the serving dependencies image.")
    parser.add_argument("--base-image", default=LOCAL_BASE_IMAGE, help="tag of the local base image")
    parser.add_argument(
        "--cache-dir", type=Path, default=image.DEFAULT_CACHE_DIR, help="where downloaded wheels are kept"
    )
    parser.add_argument("--force", action="store_true", help="rebuild the base image even if it exists")
    args = parser.parse_args()
    client = docker.from_env()
    base_id = build_local_base_image(client, args.base_image, force=args.force)
    print(f"base image {args.base_image}: {base_id}")
    deps = image.ensure_deps_image(client, args.base_image, args.cache_dir)
    print(f"dependencies image: {deps}")


if __name__ == "__main__":
    main()
