"""Slipway's own image (Dockerfile), built here as compose builds it and run: migrations, then the
web answering. No registry is reachable here, so it builds on the local base image
(shipping/base_image.py) and pip installs wheels downloaded on the host, served to the build
over loopback (--no-index): the same Dockerfile, with PIP_OPTIONS and BASE_IMAGE as build args."""

import functools
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings

from shipping.image import DEFAULT_CACHE_DIR, download_wheels
from shipping.ports import ephemeral_port

ROOT = Path(__file__).resolve().parents[1]
TAG = "slipway:test"
pytestmark = pytest.mark.slow


def requirements(tmp_path: Path) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lines = ["torch==2.13.0", *project["build-system"]["requires"], "wheel", *project["project"]["dependencies"],
             "async-timeout>=4.0.3"]  # redis needs it on the base's Python 3.11.2, not on the host's newer 3.11
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def wheel_server(tmp_path: Path) -> Iterator[str]:
    wheels = download_wheels(DEFAULT_CACHE_DIR / "image", requirements(tmp_path), dependencies=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(wheels))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()



def test_the_image_builds_and_serves_the_dashboard(wheel_server: str):
    client = docker.from_env()
    image, _ = client.images.build(
        path=str(ROOT), tag=TAG, network_mode="host", rm=True, forcerm=True, pull=False,
        buildargs={"BASE_IMAGE": settings.SLIPWAY_BASE_IMAGE, "PIP_OPTIONS": f"--no-index --find-links {wheel_server}"})
    assert image.attrs["Config"]["User"] == "slipway"
    versions = client.containers.run(
        TAG, ["python", "-c", "import django, celery, onnxruntime, torch; print(torch.__version__, django.VERSION[0])"],
        remove=True).decode().split()
    assert versions == ["2.13.0+cpu", "5"]
    port = ephemeral_port()
    container = client.containers.run(
        TAG, ["sh", "-c", f"python manage.py migrate -v0 && exec gunicorn slipway.wsgi -b 127.0.0.1:{port} -w 1"],
        detach=True, network_mode="host", environment={"SLIPWAY_SECRET_KEY": "image-test"})
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/login/", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.5)
        assert answer is not None, container.logs().decode()[-2000:]
        assert answer.status_code == 200 and "Slipway" in answer.text
        assert container.exec_run("id -un").output.decode().strip() == "slipway"
    finally:
        container.remove(force=True)
