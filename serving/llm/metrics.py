"""Prometheus metrics of a language-model server: the common request metrics plus token timings.

``slipway_model_time_to_first_token_seconds`` and ``slipway_model_inter_token_seconds`` are what a
language model's canary analysis compares (shipping/canary.py), with the error rate.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from serving.metrics import ServingMetrics

TTFT = "slipway_model_time_to_first_token_seconds"
INTER_TOKEN = "slipway_model_inter_token_seconds"  # noqa: S105 - a metric name
TOKENS = "slipway_model_tokens_total"
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INTER_TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LanguageMetrics(ServingMetrics):
    def __init__(self, model: str, version: str) -> None:
        super().__init__(model, version)
        labels = {"model": model, "version": version}
        self.ttft = Histogram(TTFT, "Time from a completion request to its first generated token.",
                              tuple(labels), buckets=TTFT_BUCKETS, registry=self.registry).labels(**labels)
        self.inter_token = Histogram(INTER_TOKEN, "Time between two generated tokens of one completion.",
                                     tuple(labels), buckets=INTER_TOKEN_BUCKETS,
                                     registry=self.registry).labels(**labels)
        self._tokens = Counter(TOKENS.removesuffix("_total"), "Tokens read (prompt) and generated (completion).",
                               (*labels, "kind"), registry=self.registry)
        self._labels_only = labels

    def count_tokens(self, prompt: int, completion: int) -> None:
        self._tokens.labels(**self._labels_only, kind="prompt").inc(prompt)
        self._tokens.labels(**self._labels_only, kind="completion").inc(completion)
