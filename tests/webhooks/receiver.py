"""A real webhook receiver: an HTTP server in a thread that checks each delivery's signature the way
the README tells receivers to, records it, and answers with the status codes it is given."""

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Hit:
    event: str
    delivery: str
    timestamp: str
    signed: bool  # the signature matched the secret
    body: dict
    user_agent: str
    at: float  # time.monotonic() when it arrived
    host: str = ""  # the Host header


class Receiver:
    def __init__(self, secret: str, answers: tuple[int, ...] = ()) -> None:
        self.secret = secret
        self.answers = list(answers)  # status codes for the first requests; 200 afterwards
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 30) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.hits) >= count, f"{len(self.hits)} deliveries arrived, not {count}: {self.hits}"
        return list(self.hits)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Slipway-Timestamp"]
                mac = hmac.new(receiver.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
                with receiver._lock:
                    receiver.hits.append(Hit(
                        event=self.headers["X-Slipway-Event"], delivery=self.headers["X-Slipway-Delivery"],
                        timestamp=timestamp, body=json.loads(body), user_agent=self.headers["User-Agent"],
                        signed=hmac.compare_digest("sha256=" + mac.hexdigest(), self.headers["X-Slipway-Signature"]),
                        at=time.monotonic(), host=self.headers["Host"]))
                    code = receiver.answers.pop(0) if receiver.answers else 200
                answer = b"boom" if code >= 400 else b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def dead_url() -> str:
    """A URL where nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
