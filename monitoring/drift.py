"""Distances between the evaluation data's distribution of a feature and the live one, both given
as counts over the same bins (serving/watch.py bins live inputs with the evaluation's edges)."""

import math
from collections.abc import Sequence

# A bin empty on one side would make PSI infinite; proportions are floored at this.
PSI_FLOOR = 1e-4


def _proportions(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    if total <= 0:
        raise ValueError("no observations to compare")
    return [n / total for n in counts]


def psi(reference: Sequence[int], live: Sequence[int]) -> float:
    """Population stability index: sum of (live - ref) · ln(live / ref) over the bins, proportions floored.

    Common reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one."""
    if len(reference) != len(live):
        raise ValueError(f"{len(reference)} reference bins but {len(live)} live ones")
    expected = [max(p, PSI_FLOOR) for p in _proportions(reference)]
    actual = [max(p, PSI_FLOOR) for p in _proportions(live)]
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


def ks(reference: Sequence[int], live: Sequence[int]) -> float:
    """Kolmogorov-Smirnov distance of the binned distributions: the largest gap between their CDFs."""
    if len(reference) != len(live):
        raise ValueError(f"{len(reference)} reference bins but {len(live)} live ones")
    gap = cumulative_ref = cumulative_live = 0.0
    for e, a in zip(_proportions(reference), _proportions(live), strict=True):
        cumulative_ref += e
        cumulative_live += a
        gap = max(gap, abs(cumulative_live - cumulative_ref))
    return gap


def feature_drift(names: Sequence[str], references: Sequence[Sequence[int]],
                  live: Sequence[Sequence[int]]) -> tuple[dict[str, float], float, float]:
    """PSI of every feature with live observations, and the largest PSI and KS distance."""
    by_feature: dict[str, float] = {}
    largest_ks = 0.0
    for name, reference, counts in zip(names, references, live, strict=True):
        if sum(counts) == 0 or sum(reference) == 0:
            continue
        by_feature[name] = round(psi(reference, counts), 6)
        largest_ks = max(largest_ks, ks(reference, counts))
    return by_feature, max(by_feature.values(), default=0.0), round(largest_ks, 6)
