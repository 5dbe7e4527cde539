import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from serving.app import ServingApp
from serving.config import ServingConfig
from serving.integrity import file_sha256
from shipping.ports import PortAllocator
from tests.serving.onnx_models import linear_model, two_input_model

ROOT = Path(__file__).resolve().parents[2]


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body


def call(app: ServingApp, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
         extra: dict[str, str] | None = None) -> Answer:
    """Call the WSGI app in-process, as a WSGI server would (a query string after '?'); ``extra``
    adds WSGI variables such as request headers (``HTTP_...``)."""
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **(extra or {}),
    }
    captured = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured.update(status=status, headers=headers)

    payload = b"".join(app(environ, start_response))
    return Answer(captured["status"], captured["headers"], payload)


def make_app(model: Path, **overrides: object) -> ServingApp:
    settings = {"model_name": "linear", "version": "1.2.0", "sha256": file_sha256(model), "release_id": "41"}
    return ServingApp(ServingConfig(model=model, **(settings | overrides)))


@pytest.fixture(scope="session")
def linear_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linear_model(tmp_path_factory.mktemp("models") / "linear.onnx")


@pytest.fixture(scope="session")
def two_input_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_input_model(tmp_path_factory.mktemp("models") / "two.onnx")


@pytest.fixture
def app(linear_path: Path) -> ServingApp:
    app = make_app(linear_path)
    app.load_model()
    return app


@contextmanager
def serving_process(model: Path, tmp_path: Path, name: str, *options: str,
                    env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m serving` on a free port, ready; killed afterwards."""
    port = PortAllocator().allocate()
    environment = os.environ | {"SLIPWAY_RELEASE_ID": "41", "SLIPWAY_MODEL_NAME": name} | (env or {})
    log_path = tmp_path / f"server-{port}.log"
    command = [sys.executable, "-m", "serving", "--model", str(model), "--port", str(port),
               "--sha256", file_sha256(model), "--version", "1.2.0", *options]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or too slow on a busy machine
                pass
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
