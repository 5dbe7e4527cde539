"""Latency of several models compared with its uncertainty: interleaved rounds and bootstrap intervals.

Timing on a shared machine drifts by tens of percent within seconds, so models timed one after
the other are not comparable. Here every model runs in every round, on the same evaluation samples
(their real rows, at their real lengths), in an order that rotates from round to round. Each
model's round figure is the median of its runs in that round, and a candidate's latency ratio to
the original is paired round by round. Resampling the rounds (a bootstrap) gives an interval for
the ratio of medians: when it lies wholly below (or above) 1 the measurement resolves the
difference; when it straddles 1 the two are as fast as each other as far as anyone can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from workers.ml.evalset import EvalSet
from workers.ml.evaluate import Measurement
from workers.ml.measure import Feeds, batch_of, time_runs, warm_up
from workers.ml.runtime import make_session
from workers.ml.validate import fixed_batch_size, match_inputs, specs_of

ROUNDS = 15
RUNS_PER_ROUND = 3
MIN_ROUNDS = 8
TIME_BUDGET_S = 20.0  # all models together; fewer runs per round, then fewer rounds, past it
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0  # the same timings always give the same interval


@dataclass(frozen=True)
class RatioInterval:
    """A candidate's median latency over the reference's, with its bootstrap interval."""

    ratio: float
    low: float
    high: float

    @property
    def faster(self) -> bool:
        return self.high < 1

    @property
    def slower(self) -> bool:
        return self.low > 1

    def text(self) -> str:
        return f"x{self.ratio:.2f} ({self.low:.2f} to {self.high:.2f})"


@dataclass(frozen=True)
class Timing:
    """Per model (in the order given): every run in ms, and the median of each round."""

    runs: list[np.ndarray]
    rounds: np.ndarray  # models x rounds


def time_interleaved(
    paths: list[Path],
    evalset: EvalSet,
    *,
    device: str = "cpu",
    threads: int = 1,
    rounds: int = ROUNDS,
    runs_per_round: int = RUNS_PER_ROUND,
    budget_s: float = TIME_BUDGET_S,
) -> Timing:
    """Time every model at batch 1 (or its fixed batch) on the same evaluation samples, interleaved."""
    sessions = [make_session(path, device, threads=threads, spinning=False) for path in paths]
    feeds = [_feeds(session, evalset) for session in sessions]
    batch = fixed_batch_size(specs_of(sessions[0].get_inputs())) or 1
    one_run = []
    for session, feed in zip(sessions, feeds, strict=True):
        warm_up(session, batch_of(feed, 0, batch), 2)
        one_run.append(float(np.median(time_runs(session, [batch_of(feed, 0, batch)] * 3))) / 1000)
    rounds, runs_per_round = fit_budget(sum(one_run), rounds, runs_per_round, budget_s)
    count = evalset.num_samples
    runs: list[list[float]] = [[] for _ in sessions]
    medians = np.zeros((len(sessions), rounds))
    for r in range(rounds):
        starts = [((r * runs_per_round + k) * batch) % count for k in range(runs_per_round)]
        for offset in range(len(sessions)):
            m = (r + offset) % len(sessions)
            times = time_runs(sessions[m], [batch_of(feeds[m], start, batch) for start in starts])
            runs[m] += times
            medians[m, r] = float(np.median(times))
    return Timing([np.array(times) for times in runs], medians)


def latency_figures(
    paths: list[Path], evalset: EvalSet, *, device: str = "cpu"
) -> tuple[list[dict[str, Measurement]], int]:
    """Latency metrics of every model (the original first), timed together: ``latency_p50/p95/p99_ms``
    from all its runs, and for the others ``latency_ratio`` with ``latency_ratio_low``/``_high``, the
    bootstrap interval of the ratio to the original's. Also returns the number of rounds."""
    timing = time_interleaved(paths, evalset, device=device)
    found = []
    for index, runs in enumerate(timing.runs):
        p50, p95, p99 = np.percentile(runs, [50, 95, 99])
        figures = {"latency_p50_ms": Measurement(float(p50), "ms"), "latency_p95_ms": Measurement(float(p95), "ms"),
                   "latency_p99_ms": Measurement(float(p99), "ms")}
        if index:
            interval = ratio_interval(timing.rounds[index], timing.rounds[0])
            figures |= {"latency_ratio": Measurement(interval.ratio, "ratio"),
                        "latency_ratio_low": Measurement(interval.low, "ratio"),
                        "latency_ratio_high": Measurement(interval.high, "ratio")}
        found.append(figures)
    return found, int(timing.rounds.shape[1])


def ratio_interval(candidate: np.ndarray, reference: np.ndarray, *, confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = SEED) -> RatioInterval:
    """Median(candidate) / median(reference) over paired rounds, with a percentile bootstrap interval."""
    if candidate.shape != reference.shape or candidate.ndim != 1 or len(candidate) < 2:
        raise ValueError("paired round figures of the same length (at least 2) are needed")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(candidate), size=(resamples, len(candidate)))
    ratios = np.median(candidate[picks], axis=1) / np.median(reference[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioInterval(float(np.median(candidate) / np.median(reference)), float(low), float(high))


def _feeds(session: ort.InferenceSession, evalset: EvalSet) -> Feeds:
    return match_inputs(specs_of(session.get_inputs()), evalset)


def fit_budget(seconds_per_round_run: float, rounds: int, runs: int, budget_s: float) -> tuple[int, int]:
    """Rounds and runs per round that fit ``budget_s``, never below MIN_ROUNDS rounds of one run."""
    while runs > 1 and seconds_per_round_run * rounds * runs > budget_s:
        runs -= 1
    while rounds > MIN_ROUNDS and seconds_per_round_run * rounds * runs > budget_s:
        rounds -= 1
    return rounds, runs
