import io
from pathlib import Path

import pytest

from serving.app import ServingApp
from serving.config import ServingConfig
from serving.integrity import file_sha256
from tests.serving.onnx_models import linear_model, two_input_model


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body


def call(app: ServingApp, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> Answer:
    """Call the WSGI app in-process, as a WSGI server would (a query string after '?')."""
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
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
