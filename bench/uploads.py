"""Uploading a multi-GB build, side by side in one run: the streamed PUT, the multipart POST and plain
loopback-to-file (what this machine allows without hashing or storing anything).

    .venv/bin/python bench/uploads.py            # a 4 GiB build, 2 rounds
    .venv/bin/python bench/uploads.py --mib 1024 --rounds 1

The build is a language model's tar (config.json, tokenizer.json, one big model.safetensors) of
--mib MiB (4 GiB by default: twice ONNX's 2 GB limit, and long enough that a path's steady rate,
not its start, is measured) with its JSON Lines evaluation data, sent to a gunicorn web (one worker
with threads, as the demo and the image run it) on a throwaway database and data folder. The paths
take turns each round. Each upload is sent by the same kind of client (requests, a body of 1 MiB
chunks with a Content-Length): the PUT by `slipway push` itself. Printed per path: MiB/s (median
of the rounds), the CPU seconds per GiB of the receiver (the web worker, or the plain sink) and of
the client (this process), which load disturbs far less than MiB/s, the receiver's peak RSS
(VmHWM, reset before each upload) and the load average. At the end it checks that every upload
stored the build's own sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale_services import Services, children, cpu_seconds, peak_rss_mb, wait_for_port
from bench.throwaway import configure, drop_database, recreate_database
from shipping.ports import ephemeral_port

REDIS_PORT, WEB_PORT = ephemeral_port(), ephemeral_port()
SCRATCH = configure("slipway_bench_uploads", REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
                    SLIPWAY_ALLOWED_HOSTS="127.0.0.1", SLIPWAY_MAX_UPLOAD_BYTES=str(64 * 1024**3))

import django
import requests

CHUNK = 1024 * 1024
EVAL = b'{"text": "the held-out text"}\n{"prompt": "Once", "completion": " upon"}\n'
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8}


class Body:
    """A request body of files and byte strings, read 1 MiB at a time, with its length known up front."""

    def __init__(self, *parts: bytes | Path) -> None:
        self.parts = parts
        self.total = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in parts)

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk


def write_build(folder: Path, mib: int) -> tuple[Path, Path]:
    """A language model's tar of about ``mib`` MiB (its weights one uint8 tensor) and its evaluation data."""
    size = mib * CHUNK
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    block = os.urandom(CHUNK)

    class Weights(io.RawIOBase):
        def __init__(self) -> None:
            self.head, self.left = len(header).to_bytes(8, "little") + header, size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            data = self.head or block[:min(len(buffer), self.left)]
            if not self.head:
                self.left -= len(data)
            self.head = b""
            buffer[:len(data)] = data
            return len(data)

    folder.mkdir(exist_ok=True)
    tar_path, eval_path = folder / "chat.tar", folder / "eval.jsonl"
    with tarfile.open(tar_path, "w:", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("config.json", json.dumps(CONFIG).encode()), ("tokenizer.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("model.safetensors")
        info.size = 8 + len(header) + size
        tar.addfile(info, io.BufferedReader(Weights(), CHUNK))
    eval_path.write_bytes(EVAL)
    return tar_path, eval_path


def sink(listener: socket.socket, out: Path) -> None:
    """Plain loopback-to-file: read each request's body straight into a file, hash nothing, answer 200."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the bench's clean-up: this process has nothing to clean
    buffer = memoryview(bytearray(CHUNK))
    while True:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            head, _, rest = head.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            with open(out, "wb") as file:
                file.write(rest)
                left = length - len(rest)
                while left > 0:
                    count = conn.recv_into(buffer, min(CHUNK, left))
                    if not count:
                        break
                    file.write(buffer[:count])
                    left -= count
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[Body, str]:
    """A multipart form as a streamed body (requests' own encoder holds every file in memory)."""
    boundary = "slipway-bench-" + os.urandom(8).hex()
    parts: list[bytes | Path] = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                                 for k, v in fields.items()]
    for name, path in files.items():
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
                  f"Content-Type: application/octet-stream\r\n\r\n".encode(), path, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return Body(*parts), f"multipart/form-data; boundary={boundary}"


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from the current RSS


def measure(send: Callable[[], None], pid: int, size: int) -> dict:
    reset_peak(pid)
    cpu, client_cpu, start = cpu_seconds(pid), time.process_time(), time.perf_counter()
    send()
    seconds = time.perf_counter() - start
    gib = size / 1024**3
    return {"mib_s": size / CHUNK / seconds, "cpu_s_per_gib": (cpu_seconds(pid) - cpu) / gib,
            "client_cpu_s_per_gib": (time.process_time() - client_cpu) / gib, "peak_rss_mb": peak_rss_mb(pid)}


def run(args: argparse.Namespace) -> dict:
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from releases.models import ApiToken, ModelVersion
    from slipway import cli

    call_command("migrate", verbosity=0)
    ci = User.objects.create_user("ci")
    ci.groups.add(Group.objects.get(name="deployer"))
    token = ApiToken.issue(ci, "bench-uploads", ["builds:write"])[1]
    tar, eval_data = write_build(SCRATCH, args.mib)
    size = tar.stat().st_size + eval_data.stat().st_size
    url = f"http://127.0.0.1:{WEB_PORT}"
    fields = {"model": "chat", "task": "language_model", "git_commit": "abcdef0"}

    def put(label: str, tar: Path = tar, eval_data: Path = eval_data) -> None:
        cli.push(cli.Client(url, token, timeout=600), argparse.Namespace(
            artifact=tar, eval_data=eval_data, model="chat", version=label, git_commit="abcdef0",
            task="language_model", ci_run_url="", metadata="", idempotency_key=None))

    def post(label: str, tar: Path = tar, eval_data: Path = eval_data) -> None:
        body, content_type = multipart(fields | {"version": label}, {"artifact": tar, "eval_data": eval_data})
        answer = requests.post(f"{url}/api/v1/builds/", data=body, timeout=600,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        assert answer.status_code == 201, answer.text[:300]

    listener = socket.create_server(("127.0.0.1", 0))
    sink_process = multiprocessing.Process(target=sink, args=(listener, SCRATCH / "sink.out"), daemon=True)
    sink_process.start()

    def loopback(label: str) -> None:
        answer = requests.put(f"http://127.0.0.1:{listener.getsockname()[1]}/", data=Body(eval_data, tar), timeout=600)
        assert answer.status_code == 200

    services = Services(SCRATCH)
    services.redis(REDIS_PORT)
    web = services.start("web", [sys.executable, "-m", "gunicorn", "slipway.wsgi", "-b", f"127.0.0.1:{WEB_PORT}",
                                 "-w", "1", "--threads", "4", "--timeout", "600"], dict(os.environ))
    wait_for_port(WEB_PORT, web.process, "gunicorn")
    while not children(web.process.pid):  # gunicorn listens before its worker is forked
        time.sleep(0.1)
    worker_pid = children(web.process.pid)[0]
    warm_tar, warm_eval = write_build(SCRATCH / "warm", 1)
    for send in (put, post):  # Django's imports and first connections, outside the figures
        send(f"warm-up-{send.__name__}", warm_tar, warm_eval)
    paths = {"streamed PUT": (put, worker_pid), "multipart POST": (post, worker_pid),
             "loopback-to-file": (loopback, sink_process.pid)}
    results: dict[str, list[dict]] = {name: [] for name in paths}
    try:
        for round_ in range(args.rounds):
            for name, (send, pid) in paths.items():
                label = f"{name.split()[0]}-{round_}"
                results[name].append(measure(lambda send=send, label=label: send(label), pid, size))
                row = results[name][-1]
                print(f"round {round_ + 1} {name:>16}: {row['mib_s']:7.0f} MiB/s, receiver {row['cpu_s_per_gib']:.2f} "
                      f"and client {row['client_cpu_s_per_gib']:.2f} CPU s/GiB; load {os.getloadavg()[0]:.2f}",
                      file=sys.stderr)
    finally:
        services.stop()
        sink_process.kill()
    with tar.open("rb") as handle:  # every upload stored the build's own bytes (the figures count for nothing else)
        expected = hashlib.file_digest(handle, "sha256").hexdigest()
    stored = ModelVersion.objects.exclude(label__startswith="warm-up").values_list("artifact__sha256", flat=True)
    assert set(stored) == {expected}, "an upload's sha256 is not the build's"
    return {"mib": round(size / CHUNK), "rounds": args.rounds, "load_average": [round(x, 2) for x in os.getloadavg()],
            "paths": {name: {key: round(statistics.median(row[key] for row in rows), 2)
                             for key in ("mib_s", "cpu_s_per_gib", "client_cpu_s_per_gib")}
                      | {"peak_rss_mb": max(row["peak_rss_mb"] or 0 for row in rows)}
                      for name, rows in results.items()}}


def report(result: dict) -> None:
    print(f"{result['mib']} MiB build, median of {result['rounds']} interleaved rounds; "
          f"load average (uptime) {' '.join(map(str, result['load_average']))}")
    print(f"{'path':>18} {'MiB/s':>7} {'receiver CPU s/GiB':>19} {'client CPU s/GiB':>17} {'receiver peak RSS MB':>21}")
    for name, row in result["paths"].items():
        print(f"{name:>18} {row['mib_s']:>7.0f} {row['cpu_s_per_gib']:>19} {row['client_cpu_s_per_gib']:>17} "
              f"{row['peak_rss_mb']:>21}")
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=4096, help="the build's size in MiB")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each sends the build once by every path")
    args = parser.parse_args()
    recreate_database()
    django.setup()
    try:
        result = run(args)
    finally:
        drop_database()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    report(result)


if __name__ == "__main__":
    main()
