"""Timing and memory probes for ONNX Runtime sessions.

Timing is split into small calls (:func:`warm_up`, :func:`time_runs`) so that a benchmark can
interleave several models round by round and take medians, which is what keeps the ±30% timing
noise of shared machines out of the comparisons.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort

Feeds = dict[str, np.ndarray]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


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


class PeakMemory:
    """Growth of this process's resident memory between :func:`track_peak_memory` and its end.

    On Linux the kernel's high-water mark (VmHWM) is reset by writing ``5`` to
    ``/proc/self/clear_refs``; the peak is then VmHWM at the end minus VmRSS at the start, so it
    counts everything the tracked block allocated and touched at its highest point (session
    creation, weights, arena, run buffers), even memory freed again before the end. Elsewhere the
    lifetime maximum from ``getrusage`` is used, which only grows when the block set a new peak.
    """

    bytes: int = 0


@contextmanager
def track_peak_memory() -> Iterator[PeakMemory]:
    result = PeakMemory()
    resettable = _reset_high_water_mark()
    before = _status_kib("VmRSS") if resettable else _max_rss_kib()
    yield result
    after = _status_kib("VmHWM") if resettable else _max_rss_kib()
    result.bytes = max(0, after - before) * 1024


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return _status_kib("VmHWM") >= 0
    except (OSError, ValueError):
        return False


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"{field} not in {_STATUS}")


def _max_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak
