"""`slipway`: the command-line client for CI and on-call, over the REST API with a token.

    export SLIPWAY_URL=https://slipway.example.com SLIPWAY_TOKEN=slw_...   # or: ... | slipway --token-stdin ...
    slipway push --model digits --version 1.0.1 --git-commit $(git rev-parse HEAD) model.onnx eval.npz
    slipway wait 12 --until awaiting_approval
    slipway approve 12 --comment "checked the candidates"
    slipway status                  # what serves in each environment (a table)
    slipway status 12               # one release and its stages
    slipway releases --model digits
    slipway rollback production --model digits --reason "p95 doubled"
    slipway canary promote production --model digits --reason "traffic is low at night; figures look fine"
    slipway shadow start production --model digits --release 14 --share 0.1 --minutes 10 --min-pairs 200
    slipway shadow show production --model digits       # paired figures and the verdict; stop ends it
    slipway drill staging --model digits        # roll back to the warm release and forward again, timed

Output is for people (tables, one line per event while waiting, progress bars on a terminal);
--json prints the API's JSON instead, for scripts. Events and bars go to stderr.

Exit codes: 0 done (for wait: the status waited for was reached); 1 the server refused (HTTP 4xx/5xx,
its message is printed) or could not be reached; 2 bad arguments; 3 the release ended in another
status (e.g. failed or rejected while waiting for released), or a drill failed; 4 wait timed out.
"""

import argparse
import ipaddress
import json
import os
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from slipway import cli_output

TERMINAL = {"released", "rolled_back", "rejected", "failed", "cancelled"}
OK, API_ERROR, ENDED_OTHERWISE, TIMED_OUT = 0, 1, 3, 4  # 2: bad arguments (argparse)
# A kept-alive connection that the server closes just as a request goes out on it (gunicorn closes one
# idle for 2 s) ends that request with "connection reset". Reads are sent again on a new connection
# (urllib3's Retry, for GET and HEAD only); a push is sent again whole with its Idempotency-Key, so the
# server answers with the build it may already have (PUSH_ATTEMPTS); other changes are never repeated.
READS_RETRIED = Retry(total=3, backoff_factor=0.2, allowed_methods=frozenset({"GET", "HEAD"}), status=0,
                      raise_on_status=False)
PUSH_ATTEMPTS = 3


class ApiError(Exception):
    pass


class Unreachable(ApiError):
    """The request got no answer: the connection could not be made, or broke."""


class WaitTimedOut(Exception):
    pass


def plain_http_to_another_host(url: str) -> bool:
    """True when the token would cross a network unencrypted: http:// to a host that is not this machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def read_token(from_stdin: bool) -> str:
    """The token from standard input (--token-stdin) or SLIPWAY_TOKEN; never from the command line,
    where every user of the machine sees it (ps, shell history)."""
    return sys.stdin.readline().strip() if from_stdin else os.environ.get("SLIPWAY_TOKEN", "").strip()


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        if not token:
            raise ApiError("no token: set SLIPWAY_TOKEN, or pipe it in with --token-stdin")
        if plain_http_to_another_host(url):
            print(f"slipway: warning: {url} is plain http: the token and everything else cross the network "
                  "unencrypted; use https", file=sys.stderr)
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(max_retries=READS_RETRIED))
        self.timeout = timeout

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            answer = self.session.request(method, f"{self.url}/api/v1/{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None
        body = answer.json() if answer.headers.get("Content-Type", "").startswith("application/json") else {}
        if answer.status_code >= 400:
            raise ApiError(f"HTTP {answer.status_code}: {body.get('detail', answer.text[:300])}")
        return body


class BuildBody:
    """A streamed build's body: the metadata JSON's bytes, the evaluation data's, then the artifact's, the
    files read a chunk at a time (its length known up front, so it goes with a Content-Length); on a
    terminal, a bar on stderr.

    Each chunk is a view of one reused buffer (requests sends a chunk before it asks for the next):
    no new bytes object per chunk (sending a file over loopback here: 0.19 CPU s/GiB against 0.27 in
    1 MiB reads; socket.sendfile would take 0.11, but requests has no way to it)."""

    CHUNK = 4 * 1024 * 1024

    def __init__(self, eval_data: Path, artifact: Path, metadata: bytes = b"") -> None:
        self.metadata = metadata
        self.files = [eval_data, artifact]
        self.total = len(metadata) + sum(path.stat().st_size for path in self.files)
        self.tty = sys.stderr.isatty()

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[memoryview]:
        buffer, sent = memoryview(bytearray(self.CHUNK)), len(self.metadata)
        if self.metadata:
            yield memoryview(self.metadata)
        for path in self.files:
            with path.open("rb", buffering=0) as handle:
                while count := handle.readinto(buffer):
                    sent += count
                    if self.tty:
                        fraction = sent / self.total if self.total else 1.0
                        sys.stderr.write(f"\r{self.files[1].name}: {cli_output.bar(fraction)} {sent / 1e6:.1f} MB")
                    yield buffer[:count]
        if self.tty:
            sys.stderr.write("\n")


def push(client: Client, args: argparse.Namespace) -> dict:
    """Send the build as one streamed PUT (README: "streamed PUT"), the fast way for big files; its
    metadata goes first in the body (a query string has no room for 64 KiB of it)."""
    metadata = (args.metadata or "").encode()
    fields = {"model": args.model, "version": args.version, "git_commit": args.git_commit,
              "ci_run_url": args.ci_run_url or "", "task": args.task or "", "artifact_name": args.artifact.name,
              "eval_data_name": args.eval_data.name, "metadata_bytes": len(metadata),
              "eval_data_bytes": args.eval_data.stat().st_size}
    headers = {"Content-Type": "application/octet-stream", "Idempotency-Key": args.idempotency_key or uuid.uuid4().hex}
    body = BuildBody(args.eval_data, args.artifact, metadata)  # read afresh by each attempt

    def send() -> dict:
        return client.call("PUT", "builds/", params=fields, data=body, headers=headers)

    for attempt in range(1, PUSH_ATTEMPTS):
        try:
            return send()
        except Unreachable as exc:
            print(f"slipway: {exc}; sending the build again (attempt {attempt + 1} of {PUSH_ATTEMPTS}, same "
                  "Idempotency-Key)", file=sys.stderr)
            time.sleep(0.5 * attempt)
    return send()


def wait(client: Client, release_id: int, until: set[str], timeout: float) -> dict:
    """Follow a release until it reaches a status in ``until`` or ends; WaitTimedOut after ``timeout``."""
    deadline = time.monotonic() + timeout
    events = cli_output.Events()
    try:
        while True:
            release = client.call("GET", f"releases/{release_id}/")
            events.update(release)
            if release["status"] in until or release["status"] in TERMINAL:
                return release
            if time.monotonic() > deadline:
                raise WaitTimedOut(f"release #{release_id} is still {release['status']} after {timeout:.0f} s")
            time.sleep(1)
    finally:
        events.close()


class NoTokenOnCommandLine(argparse.Action):
    """Refuses --token without echoing its value (argparse's own errors would print it into CI logs)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.error("a token is never taken on the command line, where ps and shell history show it: "
                     "set SLIPWAY_TOKEN, or pipe it in with --token-stdin")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slipway", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=os.environ.get("SLIPWAY_URL", "http://127.0.0.1:8000"))
    p.add_argument("--token-stdin", action="store_true",
                   help="read the API token from standard input (else from SLIPWAY_TOKEN)")
    p.add_argument("--token", action=NoTokenOnCommandLine, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the API's JSON (for scripts) instead of tables")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("push", help="post a build (artifact and evaluation data)")
    s.add_argument("artifact", type=Path)
    s.add_argument("eval_data", type=Path)
    for name in ("--model", "--version", "--git-commit"):
        s.add_argument(name, required=True)
    for name in ("--ci-run-url", "--metadata", "--task"):
        s.add_argument(name)
    s.add_argument("--idempotency-key", help="the same key returns the build made the first time (default: a "
                   "new one for each push, which it sends again if the connection breaks)")
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
    s = sub.add_parser("releases", help="recent releases, newest first")
    s.add_argument("--model")
    s.add_argument("--status")
    s.add_argument("--limit", type=int, default=20)
    s = sub.add_parser("rollback", help="move one model in an environment back to the release that served before")
    s.add_argument("environment")
    s.add_argument("--model", help="the model to roll back (needed when several serve there)")
    s.add_argument("--reason", required=True)
    s.add_argument("--expected-release", type=int, help="the release you expect to be serving now")
    s = sub.add_parser("canary", help="promote or abort a model's running canary (e.g. one waiting for a person)")
    s.add_argument("decision", choices=["promote", "abort"])
    s.add_argument("environment")
    s.add_argument("--model", required=True)
    s.add_argument("--reason", required=True)
    s = sub.add_parser("shadow", help="start, show or stop a model's shadow in an environment")
    s.add_argument("action", choices=["start", "show", "stop"])
    s.add_argument("environment")
    s.add_argument("--model", required=True)
    s.add_argument("--release", type=int, help="start: the release to run in shadow")
    s.add_argument("--share", type=float, default=0.1, help="start: share of requests copied, (0, 1]")
    s.add_argument("--minutes", type=float, default=10.0, help="start: shadow minutes before a verdict")
    s.add_argument("--min-pairs", type=int, default=200, help="start: pairs needed before a verdict")
    s = sub.add_parser("drill", help="roll a model back to its warm release and forward again, and time it")
    s.add_argument("environment")
    s.add_argument("--model", required=True)
    return p


def run(args: argparse.Namespace) -> dict:
    client = Client(args.url, read_token(args.token_stdin))
    if args.command == "push":
        result = push(client, args)
        if args.wait:
            print(cli_output.result("push", result), file=sys.stderr)
            return wait(client, result["release"]["id"], {args.wait}, 1800)
        return result
    if args.command == "wait":
        return wait(client, args.release, {args.until}, args.timeout)
    if args.command in ("approve", "reject"):
        return client.call("POST", f"releases/{args.release}/{args.command}/", json={"comment": args.comment})
    if args.command == "status":
        return client.call("GET", f"releases/{args.release}/" if args.release else "environments/")
    if args.command == "releases":
        query = {"model": args.model, "status": args.status, "limit": args.limit}
        return client.call("GET", "releases/", params={k: v for k, v in query.items() if v})
    if args.command == "shadow":
        path = f"environments/{args.environment}/models/{args.model}/shadow/"
        if args.action == "start":
            return client.call("POST", path, json={"release": args.release, "share": args.share,
                                                   "minutes": args.minutes, "min_pairs": args.min_pairs})
        return client.call("GET" if args.action == "show" else "DELETE", path)
    if args.command == "drill":
        return client.call("POST", f"environments/{args.environment}/models/{args.model}/drill/")
    if args.command == "canary":
        return client.call("POST", f"environments/{args.environment}/models/{args.model}/{args.decision}/",
                           json={"reason": args.reason})
    body = {"reason": args.reason} | ({"expected_release": args.expected_release} if args.expected_release else {})
    if args.model:
        return client.call("POST", f"environments/{args.environment}/models/{args.model}/rollback/", json=body)
    return client.call("POST", f"environments/{args.environment}/rollback/", json=body)


def for_people(args: argparse.Namespace, result: dict) -> str:
    waited = args.command == "wait" or (args.command == "push" and args.wait)
    if waited or (args.command == "status" and args.release):
        return cli_output.release(result)
    if args.command == "status":
        return cli_output.environments(result)
    if args.command == "releases":
        return cli_output.releases(result)
    return cli_output.result(args.command, result)


def exit_code(args: argparse.Namespace, result: dict) -> int:
    """3 when a wait ended in another status than the one it waited for, or a drill failed."""
    if args.command == "drill":
        return OK if result["result"] == "ok" else ENDED_OTHERWISE
    wanted = args.until if args.command == "wait" else args.wait if args.command == "push" else None
    return ENDED_OTHERWISE if wanted and result["status"] != wanted else OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except ApiError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return API_ERROR
    except WaitTimedOut as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return TIMED_OUT
    print(json.dumps(result, indent=2) if args.json else for_people(args, result))
    return exit_code(args, result)


if __name__ == "__main__":
    sys.exit(main())
