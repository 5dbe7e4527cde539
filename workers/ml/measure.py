"""Timing probes for ONNX Runtime sessions (memory: :mod:`workers.ml.memory`).

Timing is split into small calls (:func:`warm_up`, :func:`time_runs`) so that a benchmark can
interleave several models round by round and take medians, which is what keeps the ±30% timing
noise of shared machines out of the comparisons.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort

Feeds = dict[str, np.ndarray]


def warm_up(session: ort.InferenceSession, feeds: Feeds, runs: int = 3) -> None:
    for _ in range(runs):
        session.run(None, feeds)


def time_runs(session: ort.InferenceSession, feeds: list[Feeds]) -> list[float]:
    """Wall time in milliseconds of one ``session.run`` per feed, in order."""
    times = []
    for feed in feeds:
        start = time.perf_counter_ns()
        session.run(None, feed)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def batch_of(feeds: Feeds, start: int, size: int) -> Feeds:
    """``size`` consecutive samples from ``start``, wrapping around (repeats samples if needed)."""
    count = len(next(iter(feeds.values())))
    index = np.arange(start, start + size) % count
    return {name: array[index] for name, array in feeds.items()}
