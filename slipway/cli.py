"""`slipway`: the command-line client for CI and on-call, over the REST API with a token.

    export SLIPWAY_URL=http://127.0.0.1:8000 SLIPWAY_TOKEN=slw_...
    slipway push --model digits --version 1.0.1 --git-commit $(git rev-parse HEAD) model.onnx eval.npz
    slipway wait 12 --until awaiting_approval
    slipway approve 12 --comment "checked the candidates"
    slipway status
    slipway rollback production --reason "p95 doubled"
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests

TERMINAL = {"released", "rolled_back", "rejected", "failed", "cancelled"}


class ApiError(Exception):
    pass


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        if not token:
            raise ApiError("no token: set SLIPWAY_TOKEN or pass --token")
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            answer = self.session.request(method, f"{self.url}/api/v1/{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.url}: {exc}") from None
        body = answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else {}
        if answer.status_code >= 400:
            raise ApiError(f"HTTP {answer.status_code}: {body.get('detail', answer.text[:300])}")
        return body


class Progress:
    """Reads a file in chunks for requests to stream, drawing a bar on stderr."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("rb")
        self.total = path.stat().st_size
        self.sent = 0
        self.name = path.name

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size if size > 0 else 1024 * 1024)
        self.sent += len(chunk)
        done = int(30 * self.sent / self.total) if self.total else 30
        sys.stderr.write(f"\r{self.name}: [{'#' * done}{'.' * (30 - done)}] {self.sent / 1e6:.1f} MB")
        if not chunk:
            sys.stderr.write("\n")
        return chunk


def push(client: Client, args: argparse.Namespace) -> dict:
    fields = {"model": args.model, "version": args.version, "git_commit": args.git_commit,
              "ci_run_url": args.ci_run_url or "", "metadata": args.metadata or "{}", "task": args.task or ""}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    files = {"artifact": (args.artifact.name, Progress(args.artifact)),
             "eval_data": (args.eval_data.name, Progress(args.eval_data))}
    return client.call("POST", "builds/", data=fields, files=files, headers=headers)


def wait(client: Client, release_id: int, until: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        release = client.call("GET", f"releases/{release_id}/")
        running = next((s for s in release["stages"] if s["status"] in ("running", "waiting")), None)
        line = f"{release['status']}" + (f" · {running['name']} {running['progress']:.0f}%" if running else "")
        if line != last:
            print(f"release #{release_id}: {line}", file=sys.stderr)
            last = line
        if release["status"] in until or release["status"] in TERMINAL:
            return release
        if time.monotonic() > deadline:
            raise ApiError(f"release #{release_id} is still {release['status']} after {timeout:.0f} s")
        time.sleep(1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slipway", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=os.environ.get("SLIPWAY_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token", default=os.environ.get("SLIPWAY_TOKEN", ""))
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("push", help="post a build (artifact and evaluation data)")
    s.add_argument("artifact", type=Path)
    s.add_argument("eval_data", type=Path)
    for name in ("--model", "--version", "--git-commit"):
        s.add_argument(name, required=True)
    for name in ("--ci-run-url", "--metadata", "--task", "--idempotency-key"):
        s.add_argument(name)
    s.add_argument("--wait", metavar="STATUS", help="then wait until the release reaches this status")
    s = sub.add_parser("wait", help="wait until a release reaches a status (or ends)")
    s.add_argument("release", type=int)
    s.add_argument("--until", default="awaiting_approval")
    s.add_argument("--timeout", type=float, default=1800)
    for verb in ("approve", "reject"):
        s = sub.add_parser(verb, help=f"{verb} a release waiting at a gate")
        s.add_argument("release", type=int)
        s.add_argument("--comment", default="")
    s = sub.add_parser("status", help="what serves in each environment, or one release")
    s.add_argument("release", type=int, nargs="?")
    s = sub.add_parser("rollback", help="move an environment back to the release that served before")
    s.add_argument("environment")
    s.add_argument("--reason", required=True)
    s.add_argument("--expected-release", type=int, help="the release you expect to be serving now")
    return p


def run(args: argparse.Namespace) -> object:
    client = Client(args.url, args.token)
    if args.command == "push":
        result = push(client, args)
        if args.wait:
            return wait(client, result["release"]["id"], {args.wait}, 1800)
        return result
    if args.command == "wait":
        return wait(client, args.release, {args.until}, args.timeout)
    if args.command in ("approve", "reject"):
        return client.call("POST", f"releases/{args.release}/{args.command}/", json={"comment": args.comment})
    if args.command == "status":
        return client.call("GET", f"releases/{args.release}/" if args.release else "environments/")
    body = {"reason": args.reason} | ({"expected_release": args.expected_release} if args.expected_release else {})
    return client.call("POST", f"environments/{args.environment}/rollback/", json=body)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except ApiError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
