"""Canary analysis of language models: time to first token p95, inter-token p95 and error rate, read
from the model servers' own /metrics text."""

from prometheus_client import generate_latest

from serving.llm.metrics import LanguageMetrics
from shipping.canary import Thresholds, analyse, parse_metrics, window


def served(ttft_s: float, gap_s: float, requests: int, errors: int = 0) -> tuple:
    metrics = LanguageMetrics("chat", "1")
    before = parse_metrics(generate_latest(metrics.registry).decode())
    for index in range(requests):
        metrics.ttft.observe(ttft_s)
        for _ in range(4):
            metrics.inter_token.observe(gap_s)
        metrics.observe_request(500 if index < errors else 200, 5.0, None)
    return window(before, parse_metrics(generate_latest(metrics.registry).decode()))


def test_a_canary_as_fast_per_token_passes_whatever_its_request_latency():
    verdict = analyse(served(0.02, 0.004, 60), served(0.021, 0.0042, 60), Thresholds(min_requests=50))
    assert verdict.passed, verdict.reason
    assert "time to first token p95 ratio" in verdict.reason and "inter-token p95 ratio" in verdict.reason


def test_a_canary_slower_to_its_first_token_fails_with_the_figures():
    verdict = analyse(served(0.02, 0.004, 60), served(0.2, 0.004, 60), Thresholds(min_requests=50))
    assert not verdict.passed
    assert verdict.reason.startswith("time to first token p95 ")
    assert verdict.measured["p95_ratios"]["time to first token"] > 1.5


def test_a_canary_slower_between_tokens_fails():
    verdict = analyse(served(0.02, 0.004, 60), served(0.02, 0.04, 60), Thresholds(min_requests=50))
    assert not verdict.passed and verdict.reason.startswith("inter-token p95 ")


def test_a_canary_with_more_errors_fails_before_its_timings_are_looked_at():
    verdict = analyse(served(0.02, 0.004, 60), served(0.02, 0.004, 60, errors=6), Thresholds(min_requests=50))
    assert not verdict.passed and verdict.reason.startswith("error rate 10.00% vs stable 0.00%")
