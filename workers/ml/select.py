"""Choose the artifact to release among the original and its compressed candidates.

Ordering (the page shows the reason for every loser):

1. A candidate that was not built, not evaluated, or falls outside the accuracy budget
   (:func:`workers.ml.policy.budget_violation`) is out. The original is always eligible.
2. Among the eligible, the fastest wins: lowest batch-1 p50 latency.
3. Latency is noisy (about ±30% on shared machines), so every eligible artifact within
   ``LATENCY_TIE`` (10%) of the fastest counts as equally fast; among those the smallest file
   wins (then the lower p50, then the original before candidates, then list order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement, Task
from workers.ml.policy import CompressionPolicy, budget_violation

LATENCY_TIE = 0.10
ORIGINAL = "original"

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
    p50: float
    size: float


def choose(
    original_metrics: Metrics,
    candidates: Sequence[tuple[Candidate, Metrics | None]],
    policy: CompressionPolicy,
    *,
    task: Task,
) -> Choice:
    reasons: list[str | None] = []
    eligible = [_contender(None, ORIGINAL, original_metrics)]
    for index, (candidate, metrics) in enumerate(candidates):
        reason = _exclusion(candidate, metrics, original_metrics, policy, task)
        reasons.append(reason)
        if reason is None and metrics is not None:
            eligible.append(_contender(index, candidate.kind, metrics))
    fastest = min(c.p50 for c in eligible)
    tied = [c for c in eligible if c.p50 <= fastest * (1 + LATENCY_TIE)]
    winner = min(tied, key=lambda c: (c.size, c.p50, c.index is not None, c.index or 0))
    for contender in eligible:
        if contender is not winner and contender.index is not None:
            reasons[contender.index] = _loss(contender, winner, tied)
    original_reason = None if winner.index is None else _loss(eligible[0], winner, tied)
    summary = (
        f"{winner.kind}: fastest inside the accuracy budget (p50 {_ms(winner.p50)}, {_size(winner.size)})"
        if winner.index is not None
        else "original: no candidate inside the accuracy budget is faster or smaller"
    )
    return Choice(winner.kind, winner.index, reasons, original_reason, summary)


def _exclusion(
    candidate: Candidate, metrics: Metrics | None, original: Metrics, policy: CompressionPolicy, task: Task
) -> str | None:
    if candidate.path is None or candidate.error:
        return f"not built: {candidate.error or 'no file'}"
    if metrics is None:
        return "not evaluated"
    if "latency_p50_ms" not in metrics or "size_bytes" not in metrics:
        return "no latency or size measured"
    return budget_violation(task, original, metrics, policy)


def _contender(index: int | None, kind: str, metrics: Metrics) -> _Contender:
    return _Contender(index, kind, metrics["latency_p50_ms"].value, metrics["size_bytes"].value)


def _loss(loser: _Contender, winner: _Contender, tied: list[_Contender]) -> str:
    if loser in tied:
        return (
            f"as fast (p50 {_ms(loser.p50)} vs {_ms(winner.p50)}, within {LATENCY_TIE:.0%}) "
            f"but larger: {_size(loser.size)} vs {_size(winner.size)}"
        )
    return f"slower: p50 {_ms(loser.p50)} vs {_ms(winner.p50)} ({winner.kind})"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _size(size: float) -> str:
    return f"{size / 1e6:.3g} MB" if size >= 1e6 else f"{size / 1e3:.3g} kB"
