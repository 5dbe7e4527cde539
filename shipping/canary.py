"""Canary analysis: compare a canary's serving metrics with the stable release's, over one window.

Each instance's /metrics is scraped at the start and at the end of the window; the difference
gives its requests, error rate (share of answers that were not 2xx) and p95 latency (from the
latency histogram, interpolated within buckets as Prometheus' histogram_quantile does).
Everything but scrape() is a pure function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

from serving.llm.metrics import INTER_TOKEN, TTFT
from serving.metrics import LATENCY, REQUESTS


@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one instance at one moment."""

    requests_by_code: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[float, float] = field(default_factory=dict)  # upper bound → cumulative count
    # Language models: time to first token and between tokens (empty for other models).
    ttft_buckets: dict[float, float] = field(default_factory=dict)
    inter_token_buckets: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowStats:
    requests: int
    errors: int
    error_rate: float
    p95_seconds: float | None  # None when there were no requests
    ttft_p95_seconds: float | None = None  # language models only
    inter_token_p95_seconds: float | None = None


@dataclass(frozen=True)
class Thresholds:
    max_error_rate_increase: float = 0.01  # absolute: 0.01 allows one more failed request in 100
    max_p95_ratio: float = 1.5
    # A p95 ratio over the limit fails only if the canary is also this much slower: at a few
    # milliseconds, bucket resolution and noise alone move the ratio past 1.5.
    min_p95_increase_seconds: float = 0.005
    min_requests: int = 50  # per instance, or the window says nothing


@dataclass(frozen=True)
class Verdict:
    passed: bool
    measured: dict
    reason: str


def parse_metrics(text: str) -> Sample:
    """Read the request counter and latency histogram from a model server's /metrics text."""
    requests_by_code: dict[str, float] = {}
    histograms: dict[str, dict[float, float]] = {f"{name}_bucket": {} for name in (LATENCY, TTFT, INTER_TOKEN)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == REQUESTS:
                code = sample.labels["code"]
                requests_by_code[code] = requests_by_code.get(code, 0.0) + sample.value
            elif sample.name in histograms:
                buckets, bound = histograms[sample.name], float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Sample(requests_by_code, histograms[f"{LATENCY}_bucket"], histograms[f"{TTFT}_bucket"],
                  histograms[f"{INTER_TOKEN}_bucket"])


HISTOGRAMS = ("latency_buckets", "ttft_buckets", "inter_token_buckets")


def sample_to_json(sample: Sample) -> dict:
    """A sample as JSON (bucket bounds become strings), to keep between scrapes."""
    return {"requests_by_code": sample.requests_by_code,
            **{name: {str(bound): count for bound, count in getattr(sample, name).items()} for name in HISTOGRAMS}}


def sample_from_json(document: dict) -> Sample:
    return Sample(dict(document.get("requests_by_code", {})),
                  *({float(bound): count for bound, count in document.get(name, {}).items()} for name in HISTOGRAMS))


def scrape(base_url: str, timeout: float = 5.0) -> Sample:
    answer = requests.get(f"{base_url}/metrics", timeout=timeout)
    answer.raise_for_status()
    return parse_metrics(answer.text)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram; None if it is empty.

    Linear interpolation inside the bucket holding the rank; a rank in the +Inf bucket gives the
    largest finite bound (the histogram cannot say more).
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def window(before: Sample, after: Sample) -> WindowStats:
    """What happened between two samples of the same instance."""
    codes = set(before.requests_by_code) | set(after.requests_by_code)
    delta = {code: after.requests_by_code.get(code, 0.0) - before.requests_by_code.get(code, 0.0) for code in codes}
    total = round(sum(delta.values()))
    errors = round(sum(count for code, count in delta.items() if not code.startswith("2")))
    def p95(name: str) -> float | None:
        earlier, later = getattr(before, name), getattr(after, name)
        return quantile(0.95, {bound: count - earlier.get(bound, 0.0) for bound, count in later.items()})

    return WindowStats(
        requests=total,
        errors=errors,
        error_rate=errors / total if total else 0.0,
        p95_seconds=p95("latency_buckets"),
        ttft_p95_seconds=p95("ttft_buckets"),
        inter_token_p95_seconds=p95("inter_token_buckets"),
    )


def analyse(stable: WindowStats, canary: WindowStats, thresholds: Thresholds) -> Verdict:
    """Pass when both saw enough traffic, the canary's error rate rose by at most the allowed amount
    and its p95 latency is at most ``max_p95_ratio`` times the stable one (or at most
    ``min_p95_increase_seconds`` above it). Language models compare time to first token p95 and
    inter-token p95 that way instead of request latency (which grows with the tokens asked for)."""
    if canary.ttft_p95_seconds is not None and stable.ttft_p95_seconds:
        return _analyse_language_model(stable, canary, thresholds)
    increase = canary.error_rate - stable.error_rate
    ratio = None
    slower = False
    if canary.p95_seconds is not None and stable.p95_seconds:
        ratio = canary.p95_seconds / stable.p95_seconds
        slower = canary.p95_seconds - stable.p95_seconds > thresholds.min_p95_increase_seconds
    measured = {
        "stable": _figures(stable),
        "canary": _figures(canary),
        "error_rate_increase": increase,
        "p95_ratio": ratio,
    }
    for name, stats in (("stable", stable), ("canary", canary)):
        if stats.requests < thresholds.min_requests:
            return Verdict(
                False,
                measured,
                f"not enough traffic: {name} served {stats.requests} requests, "
                f"at least {thresholds.min_requests} are needed",
            )
    if increase > thresholds.max_error_rate_increase:
        return Verdict(
            False,
            measured,
            f"error rate {canary.error_rate:.2%} vs stable {stable.error_rate:.2%}: "
            f"up {increase:.2%}, more than {thresholds.max_error_rate_increase:.2%}",
        )
    if slower and ratio is not None and ratio > thresholds.max_p95_ratio:
        return Verdict(
            False,
            measured,
            f"p95 latency {(canary.p95_seconds or 0) * 1000:.1f} ms vs stable "
            f"{(stable.p95_seconds or 0) * 1000:.1f} ms: {ratio:.2f}x, more than "
            f"{thresholds.max_p95_ratio:.2f}x",
        )
    return Verdict(
        True,
        measured,
        f"error rate {canary.error_rate:.2%} (stable {stable.error_rate:.2%}), "
        f"p95 ratio {'n/a' if ratio is None else f'{ratio:.2f}x'}: within thresholds",
    )


def _figures(stats: WindowStats) -> dict:
    """The window's figures, without the language-model timings a model without tokens lacks."""
    return {name: value for name, value in asdict(stats).items()
            if value is not None or name not in ("ttft_p95_seconds", "inter_token_p95_seconds")}


def _analyse_language_model(stable: WindowStats, canary: WindowStats, thresholds: Thresholds) -> Verdict:
    increase = canary.error_rate - stable.error_rate
    ratios = {}
    for label, name in (("time to first token", "ttft_p95_seconds"), ("inter-token", "inter_token_p95_seconds")):
        mine, theirs = getattr(canary, name), getattr(stable, name)
        if mine is not None and theirs:
            ratios[label] = (mine, theirs, mine / theirs)
    measured = {"stable": asdict(stable), "canary": asdict(canary), "error_rate_increase": increase,
                "p95_ratios": {label: ratio for label, (_, _, ratio) in ratios.items()}}
    for name, stats in (("stable", stable), ("canary", canary)):
        if stats.requests < thresholds.min_requests:
            return Verdict(False, measured, f"not enough traffic: {name} served {stats.requests} requests, "
                                            f"at least {thresholds.min_requests} are needed")
    if increase > thresholds.max_error_rate_increase:
        return Verdict(False, measured, f"error rate {canary.error_rate:.2%} vs stable {stable.error_rate:.2%}: "
                                        f"up {increase:.2%}, more than {thresholds.max_error_rate_increase:.2%}")
    for label, (mine, theirs, ratio) in ratios.items():
        if ratio > thresholds.max_p95_ratio and mine - theirs > thresholds.min_p95_increase_seconds:
            return Verdict(False, measured, f"{label} p95 {mine * 1000:.1f} ms vs stable {theirs * 1000:.1f} ms: "
                                            f"{ratio:.2f}x, more than {thresholds.max_p95_ratio:.2f}x")
    shown = ", ".join(f"{label} p95 ratio {ratio:.2f}x" for label, (_, _, ratio) in ratios.items()) or "no timings"
    return Verdict(True, measured, f"error rate {canary.error_rate:.2%} (stable {stable.error_rate:.2%}), "
                                   f"{shown}: within thresholds")
