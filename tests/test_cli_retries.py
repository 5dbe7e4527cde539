"""A request that goes out on a kept-alive connection as the server closes it ends with "connection reset"
(gunicorn closes a connection idle for 2 s). The CLI sends a read again, and a push again whole with the
same Idempotency-Key (the server then answers with the build it may already have); it never sends another
change twice."""

import json
import os
import socket
import struct
import threading
from unittest import mock

import pytest

from slipway.cli import Client, Unreachable, main


class ResettingServer:
    """Answers every request with a small JSON body, but resets (TCP RST) the first ``resets`` connections
    as soon as their request's head has arrived. Records (request line, headers, body bytes received)."""

    def __init__(self, resets: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.resets = resets
        self.requests: list[tuple[str, dict[str, str], int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            reader = conn.makefile("rb")
            try:
                self._answer(conn, reader)
            finally:
                reader.close()
                conn.close()

    def _answer(self, conn: socket.socket, reader) -> None:
        line = reader.readline().decode().strip()
        headers = {}
        while header := reader.readline().decode().strip():
            name, value = header.split(":", 1)
            headers[name.lower()] = value.strip()
        if self.resets:
            self.resets -= 1
            self.requests.append((line, headers, 0))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: RST
            return
        body = reader.read(int(headers.get("content-length", 0)))
        self.requests.append((line, headers, len(body)))
        answer = json.dumps({"version": {"label": "1"}, "release": {"id": 7, "status": "validating"},
                             "created": True}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def resetting_once():
    server = ResettingServer(resets=1)
    yield server
    server.close()


def test_a_read_is_sent_again_after_a_reset(resetting_once):
    assert Client(resetting_once.url, "slw_x").call("GET", "releases/7/")["release"]["id"] == 7
    assert [line for line, _, _ in resetting_once.requests] == ["GET /api/v1/releases/7/ HTTP/1.1"] * 2


def test_another_change_is_never_sent_twice(resetting_once):
    with pytest.raises(Unreachable, match="cannot reach"):
        Client(resetting_once.url, "slw_x").call("POST", "releases/7/approve/", json={"comment": ""})
    assert len(resetting_once.requests) == 1


def test_a_push_is_sent_again_whole_with_the_same_idempotency_key(resetting_once, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(os.urandom(300_000))
    (tmp_path / "eval.npz").write_bytes(os.urandom(1000))
    with mock.patch.dict(os.environ, {"SLIPWAY_TOKEN": "slw_x"}):
        code = main(["--url", resetting_once.url, "--json", "push", str(tmp_path / "model.onnx"),
                     str(tmp_path / "eval.npz"), "--model", "digits", "--version", "1", "--git-commit", "abcdef0",
                     "--metadata", '{"a": 1}'])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "sending the build again (attempt 2 of 3, same Idempotency-Key)" in err
    (first, first_headers, _), (second, second_headers, received) = resetting_once.requests
    assert first.startswith("PUT /api/v1/builds/?") and second == first
    assert first_headers["idempotency-key"] == second_headers["idempotency-key"] != ""
    assert received == int(second_headers["content-length"]) == 300_000 + 1000 + len('{"a": 1}')
