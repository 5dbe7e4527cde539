import math
from collections.abc import Callable

import numpy as np
import pytest
import requests

from serving import oip
from serving.metrics import ServingMetrics
from shipping.canary import (
    Sample,
    Thresholds,
    Verdict,
    WindowStats,
    analyse,
    parse_metrics,
    quantile,
    scrape,
    window,
)
from shipping.targets import Instance
from tests.shipping.load import LINEAR_BODY, LINEAR_INFER


def metrics_text(*requests_: tuple[int, float, int]) -> str:
    """/metrics of a server that answered each (status, seconds, count) request group."""
    metrics = ServingMetrics("iris", "2.0")
    for status, seconds, count in requests_:
        for _ in range(count):
            metrics.observe_request(status, seconds, None if status == 200 else "internal")
    return metrics.render().decode()


def test_window_counts_requests_errors_and_p95_between_two_scrapes() -> None:
    before = parse_metrics(metrics_text((200, 0.004, 10)))
    after = parse_metrics(metrics_text((200, 0.004, 10 + 90), (503, 0.004, 5), (200, 0.02, 5)))
    assert after.requests_by_code == {"200": 105.0, "503": 5.0}
    stats = window(before, after)
    # 95 of the 100 new requests took ≤ 5 ms: the 95th falls at the top of the (2.5 ms, 5 ms] bucket.
    assert stats == WindowStats(requests=100, errors=5, error_rate=0.05, p95_seconds=pytest.approx(0.005))


def test_p95_interpolates_inside_its_bucket() -> None:
    stats = window(Sample(), parse_metrics(metrics_text((200, 0.004, 90), (200, 0.02, 10))))
    # rank 95 of 100: 5 of the 10 requests in (10 ms, 25 ms] → 10 + 15 * 5/10 = 17.5 ms
    assert stats.p95_seconds == pytest.approx(0.0175)


def test_quantile_of_empty_and_overflowing_histograms() -> None:
    assert quantile(0.95, {}) is None
    assert quantile(0.95, {0.1: 0, math.inf: 0}) is None
    assert quantile(0.95, {0.1: 1, 1.0: 2, math.inf: 100}) == 1.0


STABLE = WindowStats(requests=1000, errors=10, error_rate=0.01, p95_seconds=0.010)


def test_analyse_passes_a_canary_within_thresholds() -> None:
    canary = WindowStats(requests=100, errors=1, error_rate=0.01, p95_seconds=0.012)
    verdict = analyse(STABLE, canary, Thresholds(max_error_rate_increase=0.01, max_p95_ratio=1.5))
    assert verdict == Verdict(
        True,
        {
            "stable": {"requests": 1000, "errors": 10, "error_rate": 0.01, "p95_seconds": 0.010},
            "canary": {"requests": 100, "errors": 1, "error_rate": 0.01, "p95_seconds": 0.012},
            "error_rate_increase": 0.0,
            "p95_ratio": pytest.approx(1.2),
        },
        "error rate 1.00% (stable 1.00%), p95 ratio 1.20x: within thresholds",
    )


def test_a_few_milliseconds_slower_is_not_a_regression() -> None:
    fast = WindowStats(requests=1000, errors=0, error_rate=0.0, p95_seconds=0.0025)
    verdict = analyse(fast, WindowStats(100, 0, 0.0, 0.0038), Thresholds(max_p95_ratio=1.5))
    assert (verdict.passed, verdict.measured["p95_ratio"]) == (True, pytest.approx(1.52))
    verdict = analyse(fast, WindowStats(100, 0, 0.0, 0.0038), Thresholds(min_p95_increase_seconds=0.001))
    assert (verdict.passed, verdict.reason) == (False, "p95 latency 3.8 ms vs stable 2.5 ms: 1.52x, more than 1.50x")


def test_analyse_fails_on_errors_latency_or_too_little_traffic() -> None:
    thresholds = Thresholds(max_error_rate_increase=0.01, max_p95_ratio=1.5, min_requests=50)
    errors = analyse(STABLE, WindowStats(100, 3, 0.03, 0.010), thresholds)
    assert (errors.passed, errors.reason) == (False, "error rate 3.00% vs stable 1.00%: up 2.00%, more than 1.00%")
    assert errors.measured["error_rate_increase"] == pytest.approx(0.02)
    slow = analyse(STABLE, WindowStats(100, 1, 0.01, 0.0175), thresholds)
    assert (slow.passed, slow.reason) == (False, "p95 latency 17.5 ms vs stable 10.0 ms: 1.75x, more than 1.50x")
    slightly_slower = analyse(STABLE, WindowStats(100, 1, 0.01, 0.0149), thresholds)  # 1.49x: passes
    assert slightly_slower.passed
    quiet = analyse(STABLE, WindowStats(49, 0, 0.0, 0.010), thresholds)
    assert (quiet.passed, quiet.reason) == (
        False,
        "not enough traffic: canary served 49 requests, at least 50 are needed",
    )


def test_scrape_reads_a_live_instance(launch: Callable[..., Instance]) -> None:
    instance = launch("5")
    before = scrape(instance.url)
    wrong = oip.request_document({"x": np.array([[1]], dtype=np.float32)})
    for body in (LINEAR_BODY, LINEAR_BODY, wrong):
        requests.post(instance.url + LINEAR_INFER, json=body, timeout=5)
    stats = window(before, scrape(instance.url))
    assert (stats.requests, stats.errors, stats.error_rate) == (3, 1, pytest.approx(1 / 3))
    assert 0 < stats.p95_seconds < 0.25
