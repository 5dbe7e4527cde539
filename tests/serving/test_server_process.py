"""`python -m serving` as a real process: keep-alive, readiness, graceful SIGTERM."""

import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serving import oip
from tests.serving.conftest import serving_process


@pytest.fixture
def server(linear_path: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    with serving_process(linear_path, tmp_path, "linear", "--graceful-timeout", "10") as started:
        yield started


def test_keep_alive_connection_serves_many_requests(server: tuple[subprocess.Popen, str]) -> None:
    _, url = server
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    body = json.dumps(oip.request_document({"x": np.array([[1, 2, 3, 4]], dtype=np.float32)}))
    for _ in range(200):
        connection.request("POST", "/v2/models/linear/infer", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200
        assert oip.response_outputs(json.loads(answer.read()))["scores"].tolist() == [[5.5, 5.5, 7.0]]
        assert answer.getheader("X-Release-Id") == "41"
    connection.close()


def test_sigterm_finishes_the_request_in_flight(server: tuple[subprocess.Popen, str]) -> None:
    process, url = server
    body = json.dumps(oip.request_document({"x": np.array([[1, 2, 3, 4]], dtype=np.float32)})).encode()
    client = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    # Headers and half the body, then SIGTERM, then the rest: the server must still answer it.
    client.sendall(
        b"POST /v2/models/linear/infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    client.sendall(body[10:])
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = client.recv(65536)
        if not chunk:
            break
        answer += chunk
    client.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    document = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert oip.response_outputs(document)["scores"].tolist() == [[5.5, 5.5, 7.0]]
    assert process.wait(timeout=15) == 0
