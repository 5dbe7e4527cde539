"""Prometheus metrics of one model server, all labelled by model and version.

Only prediction requests (OIP infer and /v1/predict) are counted, so canary analysis compares like
with like.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = "slipway_model_requests_total"
ERRORS = "slipway_model_errors_total"
LATENCY = "slipway_model_request_duration_seconds"
BATCH = "slipway_model_batch_size"
READY = "slipway_model_ready"
ABNORMAL = "slipway_model_abnormal_outputs_total"
# The model's own failures (not the caller's): their error series exist from the start, so that Prometheus's
# rate() counts the first failure after a fault instead of only seeing a series appear (one scrape later).
FAULT_REASONS = ("inference_failed", "internal")


class ServingMetrics:
    """Counters and histograms in a registry of their own (one per server)."""

    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        self._labels = {"model": model, "version": version}
        # prometheus_client appends "_total" to counter names itself.
        self._requests = Counter(
            REQUESTS.removesuffix("_total"),
            "Prediction requests by HTTP status code.",
            (*labels, "code"),
            registry=self.registry,
        )
        self._by_code: dict[int, Counter] = {}
        self._errors = Counter(
            ERRORS.removesuffix("_total"),
            "Failed prediction requests by reason.",
            (*labels, "reason"),
            registry=self.registry,
        )
        for reason in FAULT_REASONS:  # at 0 from the start: the first failure is a rate, not a new series
            self._errors.labels(**self._labels, reason=reason)
        self._latency = Histogram(
            LATENCY, "Time to answer a prediction request.", labels, buckets=LATENCY_BUCKETS, registry=self.registry
        ).labels(**self._labels)
        self.batch = Histogram(
            BATCH, "Rows per prediction request.", labels, buckets=BATCH_BUCKETS, registry=self.registry
        ).labels(**self._labels)
        self._abnormal = Counter(
            ABNORMAL.removesuffix("_total"),
            "Answered rows whose outputs hold NaN, infinities, or values outside the evaluation range.",
            (*labels, "kind"),
            registry=self.registry,
        )
        self._ready = Gauge(READY, "1 once the model is loaded and warmed up.", labels, registry=self.registry).labels(
            **self._labels
        )

    def observe_request(self, code: int, seconds: float, error_reason: str | None) -> None:
        counter = self._by_code.get(code)
        if counter is None:  # one labels() lookup per status code, not per request
            counter = self._by_code[code] = self._requests.labels(**self._labels, code=str(code))
        counter.inc()
        self._latency.observe(seconds)
        if error_reason is not None:
            self._errors.labels(**self._labels, reason=error_reason).inc()

    def observe_abnormal(self, rows_by_kind: Mapping[str, int]) -> None:
        for kind, rows in rows_by_kind.items():
            if rows:
                self._abnormal.labels(**self._labels, kind=kind).inc(rows)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
