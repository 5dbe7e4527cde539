"""`python -m serving` as a real process: keep-alive, readiness, graceful SIGTERM."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serving.integrity import file_sha256
from shipping.ports import PortAllocator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(linear_path: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = PortAllocator().allocate()
    env = os.environ | {"SLIPWAY_RELEASE_ID": "41", "SLIPWAY_MODEL_NAME": "linear"}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--model",
            str(linear_path),
            "--port",
            str(port),
            "--sha256",
            file_sha256(linear_path),
            "--version",
            "1.2.0",
            "--graceful-timeout",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.05)
    yield process, url
    if process.poll() is None:
        process.kill()
    process.wait()
    log.close()


def test_keep_alive_connection_serves_many_requests(server: tuple[subprocess.Popen, str]) -> None:
    _, url = server
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
    body = json.dumps({"inputs": [[1, 2, 3, 4]]})
    for _ in range(200):
        connection.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert (answer.status, json.loads(answer.read())["outputs"]) == (200, {"scores": [[5.5, 5.5, 7.0]]})
        assert answer.getheader("X-Release-Id") == "41"
    connection.close()


def test_sigterm_finishes_the_request_in_flight(server: tuple[subprocess.Popen, str]) -> None:
    process, url = server
    body = json.dumps({"inputs": [[1, 2, 3, 4]]}).encode()
    client = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    # Headers and half the body, then SIGTERM, then the rest: the server must still answer it.
    client.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
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
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"] == {"scores": [[5.5, 5.5, 7.0]]}
    assert process.wait(timeout=15) == 0
