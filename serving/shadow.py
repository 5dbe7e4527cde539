"""Shadow traffic, copied by the active release's model server.

A share of the answered infer requests is copied to the shadow release's server. The caller never
waits for it: the request handler only draws a random number and puts the request on a bounded
queue (dropped, and counted, when the queue is full); one background thread sends the copies and
pairs each shadow answer with the active release's answer to the same request, by prediction id.
Per pair it keeps both latencies and how far the answers agree: for classification whether the
labels (argmax) match, for regression the mean absolute difference, for embeddings the mean cosine
of the rows. ``GET /v1/shadow`` reports the paired figures (``pair_summary``).

Why here and not in a proxy: HAProxy 2.6 cannot mirror requests (only through an SPOE agent that
Debian does not package), Envoy is not in Debian, and nginx's mirror module holds the client's next
request on a keep-alive connection until the mirror subrequest finishes, and needs a reload (which
drops requests) to change the share.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from serving import oip

log = logging.getLogger("serving.shadow")
KEPT_PAIRS = 20000
BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SAMPLE = 2000
TASKS = ("classification", "regression", "embedding")


@dataclass(frozen=True)
class Copy:
    prediction_id: str
    body: bytes
    headers: dict[str, str]
    outputs: Mapping[str, np.ndarray]
    seconds: float


def agreement(task: str, active: np.ndarray, shadow: np.ndarray) -> float:
    """How far two answers to the same request agree (see the module docstring)."""
    a = np.asarray(active, dtype=np.float64).reshape(active.shape[0] if active.ndim else 1, -1)
    b = np.asarray(shadow, dtype=np.float64).reshape(a.shape[0], -1)
    if task == "classification":
        return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
    if task == "embedding":
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return float(np.mean(np.sum(a * b, axis=1) / np.where(norms == 0, 1, norms)))
    return float(np.mean(np.abs(a - b)))


def bootstrap_interval(active: np.ndarray, shadow: np.ndarray, quantile: float,
                       rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of quantile(shadow) - quantile(active) over paired latencies."""
    rng = np.random.default_rng(seed)
    n = len(active)
    if n > BOOTSTRAP_SAMPLE:
        keep = rng.choice(n, BOOTSTRAP_SAMPLE, replace=False)
        active, shadow, n = active[keep], shadow[keep], BOOTSTRAP_SAMPLE
    picks = rng.integers(0, n, size=(rounds, n))
    differences = np.quantile(shadow[picks], quantile, axis=1) - np.quantile(active[picks], quantile, axis=1)
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(low), float(high)


def pair_summary(task: str, active_s: np.ndarray, shadow_s: np.ndarray, agreements: np.ndarray) -> dict:
    """The paired figures: agreement, both latencies at p50 and p95, and whether the difference is real."""
    if len(active_s) == 0:
        return {"pairs": 0}
    summary: dict[str, object] = {"pairs": len(active_s), "task": task}
    name = {"classification": "same_label_rate", "embedding": "mean_cosine"}.get(task, "mean_abs_difference")
    summary[name] = float(np.mean(agreements))
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        low, high = bootstrap_interval(active_s, shadow_s, q)
        summary[f"active_{label}_ms"] = float(np.quantile(active_s, q) * 1000)
        summary[f"shadow_{label}_ms"] = float(np.quantile(shadow_s, q) * 1000)
        summary[f"{label}_difference_interval_ms"] = [low * 1000, high * 1000]
        summary[f"{label}_difference_is_real"] = bool(low > 0 or high < 0)
    return summary


def _server_timing(header: str | None, fallback: float) -> float:
    """The shadow server's own handling time (``Server-Timing: app;dur=<ms>``), comparable with the
    active server's; the round trip when the header is missing."""
    for part in (header or "").split(";"):
        if part.strip().startswith("dur="):
            try:
                return float(part.strip()[4:]) / 1000
            except ValueError:
                break
    return fallback


class ShadowCopier:
    """Copies a share of requests to ``url`` (the shadow release's server) and pairs the answers."""

    def __init__(self, url: str, model_name: str, share: float, task: str, queue_size: int = 64,
                 timeout: float = 5.0) -> None:
        self.url = url.rstrip("/") + oip.infer_path(model_name)
        self._connection: http.client.HTTPConnection | None = None  # kept alive, used by the copier thread only
        self.share = share
        self.task = task if task in TASKS else "regression"
        self.timeout = timeout
        self._queue: queue.Queue[Copy] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._pairs: deque[tuple[float, float, float]] = deque(maxlen=KEPT_PAIRS)
        self.counts = {"copied": 0, "dropped": 0, "errors": 0, "mismatched": 0}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow-copier", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop copying; copies still queued are dropped."""
        self._stopped.set()

    def offer(self, copy: Copy) -> None:
        """Called by the request handler after it has the answer: never blocks."""
        if random.random() >= self.share:
            return
        try:
            self._queue.put_nowait(copy)
        except queue.Full:
            with self._lock:
                self.counts["dropped"] += 1

    def _send(self, copy: Copy) -> tuple[dict, float]:
        started = time.perf_counter()
        status, body, length, timing = self._post(copy.body, {**copy.headers, "X-Shadow-Of": copy.prediction_id})
        seconds = _server_timing(timing, time.perf_counter() - started)
        if status != 200:
            raise ValueError(f"the shadow answered HTTP {status}: {body[:200]!r}")
        head = body[: int(length)] if length else body
        document = json.loads(head)
        if length:  # binary outputs: read them after the JSON header
            offset, outputs = int(length), {}
            for tensor in document["outputs"]:
                size = tensor.get("parameters", {}).get("binary_data_size")
                if size is not None:
                    dtype = oip.NUMPY_TYPES[tensor["datatype"]]
                    outputs[tensor["name"]] = np.frombuffer(body[offset: offset + size], dtype=dtype).reshape(
                        tensor["shape"])
                    offset += size
                else:
                    outputs[tensor["name"]] = np.asarray(tensor["data"]).reshape(tensor["shape"])
            return outputs, seconds
        return oip.response_outputs(document), seconds

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str | None, str | None]:
        """POST over one kept-alive connection (no connect, and no new handler on the shadow, per copy);
        a connection the shadow closed is opened again once."""
        for attempt in (1, 2):
            if self._connection is None:
                parts = urlsplit(self.url)
                kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                self._connection = kind(parts.netloc, timeout=self.timeout)
            try:
                self._connection.request("POST", urlsplit(self.url).path, body, headers)
                answer = self._connection.getresponse()
                return (answer.status, answer.read(), answer.getheader(oip.HEADER_LENGTH),
                        answer.getheader("Server-Timing"))
            except (http.client.HTTPException, OSError):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                copy = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                outputs, seconds = self._send(copy)
                shared = [name for name in copy.outputs if name in outputs]
                if not shared or outputs[shared[0]].shape != copy.outputs[shared[0]].shape:
                    with self._lock:
                        self.counts["mismatched"] += 1
                    continue
                score = agreement(self.task, copy.outputs[shared[0]], outputs[shared[0]])
                with self._lock:
                    self.counts["copied"] += 1
                    self._pairs.append((copy.seconds, seconds, score))
            except (http.client.HTTPException, OSError, ValueError, KeyError, TypeError) as error:
                with self._lock:
                    self.counts["errors"] += 1
                log.debug("shadow copy of %s failed: %s", copy.prediction_id, error)
        if self._connection is not None:
            self._connection.close()

    def report(self) -> dict[str, object]:
        with self._lock:
            pairs = np.array(self._pairs, dtype=np.float64).reshape(-1, 3)
            counts = dict(self.counts)
        summary = pair_summary(self.task, pairs[:, 0], pairs[:, 1], pairs[:, 2])
        return {"target": self.url, "share": self.share, "queued": self._queue.qsize(), **counts, **summary}
