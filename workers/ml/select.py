"""Choose the artifact to release among the original and its compressed candidates.

Ordering (the page shows the reason for every loser):

1. A candidate that was not built, not evaluated, falls outside the accuracy budget
   (:func:`workers.ml.policy.budget_violation`) or over the memory budget is out. The original is
   always eligible.
2. Speed counts only where the measurement resolves it and it matters. Each candidate's latency is
   a ratio to the original's with an interval (:mod:`workers.ml.timing`: interleaved rounds,
   bootstrap); the original's is exactly 1. An eligible artifact is measurably slower than another
   when its interval lies wholly above the other's and the difference is at least ``MIN_RELATIVE``
   (5%) and ``MIN_DIFFERENCE_MS`` (0.05 ms at the original's p50): a real but microscopic difference,
   such as a few microseconds on a small model, resolves on one run and not on the next, so it
   must not decide. Those measurably slower than some other are out.
3. Among the rest — as fast as each other as far as the measurement can tell — the smallest file
   wins; among equal sizes the original (no change for nothing), then list order.

Noise therefore cannot put a larger model in front: it can only widen intervals, which turns a
speed difference into a tie that the smaller artifact wins. Metrics without an interval (older
releases, benchmarks that time otherwise) count their p50 ratio as exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement, Task
from workers.ml.policy import CompressionPolicy, budget_violation
from workers.ml.timing import RatioInterval

ORIGINAL = "original"
MIN_RELATIVE = 0.05
MIN_DIFFERENCE_MS = 0.05

Metrics = Mapping[str, Measurement]


@dataclass(frozen=True)
class Choice:
    kind: str  # the chosen candidate's kind, or "original"
    index: int | None  # position in the candidate list, None for the original
    reasons: list[str | None]  # per candidate, why it lost (None for the chosen one)
    original_reason: str | None  # why the original lost (None when it is chosen)
    summary: str


@dataclass(frozen=True)
class _Contender:
    index: int | None
    kind: str
    speed: RatioInterval  # latency relative to the original's
    size: float

    @property
    def name(self) -> str:
        return self.kind


def latency_interval(metrics: Metrics, original: Metrics) -> RatioInterval:
    """A candidate's latency ratio to the original with its interval (exact when none was measured)."""
    if "latency_ratio" in metrics:
        return RatioInterval(metrics["latency_ratio"].value, metrics["latency_ratio_low"].value,
                             metrics["latency_ratio_high"].value)
    ratio = metrics["latency_p50_ms"].value / max(original["latency_p50_ms"].value, 1e-12)
    return RatioInterval(ratio, ratio, ratio)


def choose(
    original_metrics: Metrics,
    candidates: Sequence[tuple[Candidate, Metrics | None]],
    policy: CompressionPolicy,
    *,
    task: Task,
) -> Choice:
    reasons: list[str | None] = []
    original = _Contender(None, ORIGINAL, RatioInterval(1.0, 1.0, 1.0), original_metrics["size_bytes"].value)
    eligible = [original]
    for index, (candidate, metrics) in enumerate(candidates):
        reason = _exclusion(candidate, metrics, original_metrics, policy, task)
        reasons.append(reason)
        if reason is None and metrics is not None:
            eligible.append(_Contender(index, candidate.kind, latency_interval(metrics, original_metrics),
                                       metrics["size_bytes"].value))
    base_ms = original_metrics["latency_p50_ms"].value if "latency_p50_ms" in original_metrics else 0.0
    beaten = {id(c): _faster_than(c, eligible, base_ms) for c in eligible}
    front = [c for c in eligible if beaten[id(c)] is None]
    winner = min(front, key=lambda c: (c.size, c.index is not None, c.index or 0))
    for contender in eligible:
        if contender is not winner and contender.index is not None:
            reasons[contender.index] = _loss(contender, winner, beaten[id(contender)])
    original_reason = None if winner is original else _loss(original, winner, beaten[id(original)])
    return Choice(winner.kind, winner.index, reasons, original_reason, _summary(winner, original))


def _faster_than(contender: _Contender, eligible: list[_Contender], base_ms: float) -> _Contender | None:
    """The eligible artifact that is measurably faster than ``contender`` by the most, or None."""
    faster = [c for c in eligible if c.speed.high < contender.speed.low
              and contender.speed.ratio >= c.speed.ratio * (1 + MIN_RELATIVE)
              and (contender.speed.ratio - c.speed.ratio) * base_ms >= MIN_DIFFERENCE_MS]
    return min(faster, key=lambda c: c.speed.high) if faster else None


def _exclusion(
    candidate: Candidate, metrics: Metrics | None, original: Metrics, policy: CompressionPolicy, task: Task
) -> str | None:
    if candidate.path is None or candidate.error:
        return candidate.error if candidate.not_applicable else f"not built: {candidate.error or 'no file'}"
    if metrics is None:
        return "not evaluated"
    if "latency_p50_ms" not in metrics or "size_bytes" not in metrics:
        return "no latency or size measured"
    budget = policy.max_peak_memory_bytes
    if budget is not None and "peak_memory_bytes" not in metrics:
        return "no peak memory measured (the policy has a memory budget)"
    if budget is not None and metrics["peak_memory_bytes"].value > budget:
        return f"peak memory {_size(metrics['peak_memory_bytes'].value)} over the budget of {_size(budget)}"
    return budget_violation(task, original, metrics, policy)


def _speed(contender: _Contender) -> str:
    if contender.index is None:
        return "the original's latency"
    return f"latency {contender.speed.text()} of the original's"


def _loss(loser: _Contender, winner: _Contender, faster: _Contender | None) -> str:
    if faster is not None:
        return f"measurably slower than {faster.name}: {_speed(loser)} vs {_speed(faster)}"
    if loser.size == winner.size:
        return f"as fast as {winner.name} within the measurement's uncertainty ({_speed(loser)}) and the same size"
    return (f"as fast as {winner.name} within the measurement's uncertainty ({_speed(loser)}) "
            f"but larger: {_size(loser.size)} vs {_size(winner.size)}")


def _summary(winner: _Contender, original: _Contender) -> str:
    if winner.index is None:
        return "original: no candidate inside the budget is measurably faster, or as fast and smaller"
    if winner.speed.faster:
        return (f"{winner.kind}: measurably faster than the original ({_speed(winner)}), "
                f"{_size(winner.size)} vs {_size(original.size)}")
    return (f"{winner.kind}: as fast as the original within the measurement's uncertainty ({_speed(winner)}) "
            f"and smaller: {_size(winner.size)} vs {_size(original.size)}")


def _size(size: float) -> str:
    return f"{size / 1e6:.3g} MB" if size >= 1e6 else f"{size / 1e3:.3g} kB"
