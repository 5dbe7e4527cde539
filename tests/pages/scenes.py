"""A populated installation for the page tests: one model with a history of versions, a release at
its gate with candidates, and production serving with a warm predecessor, samples and history."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User

from releases.models import Artifact, Release
from tests.pages import data as d

# The figures of the released versions, oldest first; the last version waits at its gate.
ACCURACY = [0.93, 0.935, 0.94, 0.945, 0.95]
P95_MS = [9.0, 8.5, 8.0, 7.5, 7.0]
SIZE_BYTES = [2_000_000, 1_900_000, 1_800_000, 1_700_000, 1_600_000]


@dataclass
class Scene:
    releases: list[Release]  # oldest first; the last waits at its gate
    at_gate: Release
    candidates: dict[str, Artifact]
    previous: Release  # warm in production
    serving: Release  # active in production


def build(users: dict[str, User]) -> Scene:
    model = d.make_model("digits", min_accuracy=0.9, max_latency_p95_ms=20.0, accuracy_budget=0.01)
    releases = [
        d.make_release(d.make_version(model, f"1.{i}.0", users["ci"], size=size), "released", d.STAGES_DONE,
                       {"accuracy": accuracy, "latency_p95_ms": p95, "size_bytes": size})
        for i, (accuracy, p95, size) in enumerate(zip(ACCURACY, P95_MS, SIZE_BYTES, strict=True))]
    at_gate = d.make_release(d.make_version(model, f"1.{len(releases)}.0", users["ci"], size=1_500_000))
    releases.append(at_gate)
    d.Metric.objects.bulk_create([
        d.Metric(release=at_gate, artifact=at_gate.version.artifact, name=name, value=value, unit=d.unit_of(name))
        for name, value in {"accuracy": 0.962, "latency_p50_ms": 5.1, "latency_p95_ms": 6.4,
                            "size_bytes": 1_500_000}.items()])
    candidates = {
        "int8-dynamic": d.add_candidate(at_gate, "int8-dynamic", 400_000,
                                        {"accuracy": 0.958, "latency_p50_ms": 2.2, "latency_p95_ms": 2.9,
                                         "size_bytes": 400_000, "parity_max_abs_diff": 0.0123,
                                         "top1_agreement": 0.991},
                                        reason="smallest and fastest within the accuracy budget", chosen=True),
        "int8-static": d.add_candidate(at_gate, "int8-static", 390_000,
                                       {"accuracy": 0.941, "latency_p50_ms": 2.0, "latency_p95_ms": 2.6,
                                        "size_bytes": 390_000, "parity_max_abs_diff": 0.21, "top1_agreement": 0.95},
                                       reason="accuracy 0.941 is below the budget 0.952"),
        "fp16": d.add_candidate(at_gate, "fp16", 750_000,
                                {"accuracy": 0.962, "latency_p50_ms": 4.8, "latency_p95_ms": 6.1,
                                 "size_bytes": 750_000, "parity_max_abs_diff": 0.0004, "top1_agreement": 1.0,
                                 "latency_ratio": 0.94, "latency_ratio_low": 0.85, "latency_ratio_high": 1.05,
                                 "peak_memory_bytes": 6_000_000},
                                reason="larger than int8-dynamic"),
        "pruned": d.add_candidate(at_gate, "pruned", 0, {}, error="pruning needs torch weights; the build is ONNX"),
    }
    d.Metric.objects.bulk_create(
        d.Metric(release=at_gate, artifact=candidates["int8-dynamic"], name=name, value=value, unit=d.unit_of(name))
        for name, value in {"latency_p99_ms": 3.4, "throughput_per_s": 410.0, "peak_memory_bytes": 9_000_000}.items())
    d.add_gate_check(at_gate, "accuracy", ">=", 0.9, 0.958)
    d.add_gate_check(at_gate, "latency_p95_ms", "<=", 20.0, 2.9)

    previous, serving = releases[-3], releases[-2]
    d.deploy("production", previous, "warm", 0)
    d.deploy("production", serving, "active", 100)
    d.deploy("staging", serving, "active", 100)
    d.traffic("production", d.T0, {previous: 100}, "deploy", users["ci"], "first release")
    d.traffic("production", d.T0 + timedelta(minutes=10), {previous: 90, serving: 10}, "canary", users["ci"])
    d.traffic("production", d.T0 + timedelta(minutes=20), {serving: 100}, "promote", users["ci"],
              "canary analysis passed")
    d.samples("production", previous, d.T0, 120, p95=11.0)
    d.samples("production", serving, d.T0 + timedelta(minutes=10), 120, rps=30.0, p95=9.0)
    return Scene(releases, at_gate, candidates, previous, serving)
