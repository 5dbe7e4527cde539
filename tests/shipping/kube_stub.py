"""A stand-in for the Kubernetes API server, for the requests the Kubernetes target makes.

It is not a cluster: it stores what it is sent, answers with it the way the API server does (201 on
create, 409 when the name is taken, 404 for what it does not hold, the stored object on read, patch and
delete, every Deployment reported ready) and records each request, so the tests see exactly which
calls and bodies the official client sends. Nothing is scheduled, pulled or probed.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    content_type: str
    body: dict | None


@dataclass
class KubeStub:
    url: str = ""
    objects: dict[str, dict] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    ready: bool = True  # False: every Deployment reports 0 ready replicas (a rollout that never becomes ready)

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "users": [{"name": "stub", "user": {"token": "stub-token"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}]}))
        return path

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def _status(code: int, reason: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}


def _handler(stub: KubeStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            request = Request(self.command, self.path.split("?")[0], self.headers.get("Content-Type", ""), body)
            stub.requests.append(request)
            return request

        def do_POST(self) -> None:
            request = self._record()
            key = f"{request.path}/{request.body['metadata']['name']}"
            if key in stub.objects:
                self._answer(409, _status(409, "AlreadyExists"))
                return
            stub.objects[key] = request.body
            self._answer(201, request.body)

        def do_PATCH(self) -> None:
            request = self._record()
            if request.path not in stub.objects:
                self._answer(404, _status(404, "NotFound"))
                return
            stub.objects[request.path] = request.body
            self._answer(200, request.body)

        def do_GET(self) -> None:
            request = self._record()
            if request.path.endswith("/pods"):  # a listing by label selector: no pod is ever scheduled here
                self._answer(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
                return
            key = request.path.removesuffix("/status")
            if key not in stub.objects:
                self._answer(404, _status(404, "NotFound"))
                return
            stored = stub.objects[key]
            replicas = stored.get("spec", {}).get("replicas", 1)
            ready = replicas if stub.ready else 0
            self._answer(200, stored | {"status": {"replicas": replicas, "readyReplicas": ready}})

        def do_DELETE(self) -> None:
            request = self._record()
            deleted = stub.objects.pop(request.path, None)
            if deleted is None:
                self._answer(404, _status(404, "NotFound"))
                return
            self._answer(200, deleted)  # the API server answers with the object it deletes

    return Handler


@contextmanager
def kube_stub() -> Iterator[KubeStub]:
    stub = KubeStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
