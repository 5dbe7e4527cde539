from __future__ import annotations

from pathlib import Path

from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement
from workers.ml.policy import CompressionPolicy
from workers.ml.select import choose

ORIGINAL = {"accuracy": Measurement(0.962, "ratio"), "latency_p50_ms": Measurement(2.0, "ms"),
            "size_bytes": Measurement(4_000_000, "bytes")}


def metrics(accuracy: float, ratio: tuple[float, float, float], size: float, memory: float | None = None
            ) -> dict[str, Measurement]:
    low, mid, high = ratio
    found = {
        "accuracy": Measurement(accuracy, "ratio"),
        "latency_p50_ms": Measurement(2.0 * mid, "ms"),
        "latency_ratio": Measurement(mid, "ratio"),
        "latency_ratio_low": Measurement(low, "ratio"),
        "latency_ratio_high": Measurement(high, "ratio"),
        "size_bytes": Measurement(size, "bytes"),
    }
    if memory is not None:
        found["peak_memory_bytes"] = Measurement(memory, "bytes")
    return found


def built(kind: str) -> Candidate:
    return Candidate(kind, Path(f"{kind}.onnx"), {})


def test_a_measurably_faster_candidate_wins_and_every_loser_says_why() -> None:
    candidates = [
        (built("int8-static"), metrics(0.941, (0.40, 0.45, 0.50), 1_000_000)),
        (built("int8-dynamic"), metrics(0.958, (0.55, 0.60, 0.65), 1_000_000)),
        (built("fp16"), metrics(0.962, (1.10, 1.20, 1.30), 2_000_000)),
        (built("int8-mixed"), metrics(0.960, (0.50, 0.62, 0.70), 1_100_000)),
        (Candidate("distilled", None, {}, "not applicable: the policy names no student architecture"), None),
        (built("pruned"), None),
    ]
    choice = choose(ORIGINAL, candidates, CompressionPolicy(), task="classification")
    assert (choice.kind, choice.index) == ("int8-dynamic", 1)
    assert choice.reasons == [
        "accuracy 0.941 below budget 0.952 (original 0.962 - 0.01)",
        None,
        "measurably slower than int8-dynamic: latency x1.20 (1.10 to 1.30) of the original's "
        "vs latency x0.60 (0.55 to 0.65) of the original's",
        "as fast as int8-dynamic within the measurement's uncertainty (latency x0.62 (0.50 to 0.70) of the "
        "original's) but larger: 1.1 MB vs 1 MB",
        "not applicable: the policy names no student architecture",
        "not evaluated",
    ]
    assert choice.original_reason == ("measurably slower than int8-dynamic: the original's latency "
                                      "vs latency x0.60 (0.55 to 0.65) of the original's")
    assert choice.summary == ("int8-dynamic: measurably faster than the original "
                              "(latency x0.60 (0.55 to 0.65) of the original's), 1 MB vs 4 MB")


def test_noise_cannot_put_a_larger_model_in_front() -> None:
    # int8-mixed looks faster, but its interval overlaps int8-dynamic's: the smaller one wins.
    candidates = [
        (built("int8-mixed"), metrics(0.96, (0.30, 0.50, 0.95), 1_100_000)),
        (built("int8-dynamic"), metrics(0.96, (0.60, 0.80, 0.99), 1_000_000)),
    ]
    choice = choose(ORIGINAL, candidates, CompressionPolicy(), task="classification")
    assert choice.kind == "int8-dynamic"
    # A candidate no faster than the original still wins a tie by being smaller.
    tie = choose(ORIGINAL, [(built("fp16"), metrics(0.962, (0.9, 1.0, 1.1), 2_000_000))], CompressionPolicy(),
                 task="classification")
    assert tie.kind == "fp16"
    assert tie.summary == ("fp16: as fast as the original within the measurement's uncertainty "
                           "(latency x1.00 (0.90 to 1.10) of the original's) and smaller: 2 MB vs 4 MB")
    assert tie.original_reason == ("as fast as fp16 within the measurement's uncertainty (the original's "
                                   "latency) but larger: 4 MB vs 2 MB")


def test_the_original_stays_when_nothing_is_measurably_faster_or_smaller() -> None:
    same_size = choose(ORIGINAL, [(built("pruned"), metrics(0.962, (0.8, 0.95, 1.05), 4_000_000))],
                       CompressionPolicy(), task="classification")
    assert (same_size.kind, same_size.index, same_size.original_reason) == ("original", None, None)
    assert same_size.reasons == ["as fast as original within the measurement's uncertainty (latency x0.95 "
                                 "(0.80 to 1.05) of the original's) and the same size"]
    assert same_size.summary == "original: no candidate inside the budget is measurably faster, or as fast and smaller"
    slower = choose(ORIGINAL, [(built("fp16"), metrics(0.962, (2.5, 3.0, 3.5), 3_000))], CompressionPolicy(),
                    task="classification")
    assert slower.kind == "original"
    assert slower.reasons == ["measurably slower than original: latency x3.00 (2.50 to 3.50) of the original's "
                              "vs the original's latency"]


def test_a_resolved_but_microscopic_difference_does_not_decide() -> None:
    tiny = dict(ORIGINAL, latency_p50_ms=Measurement(0.02, "ms"))  # 20 microseconds
    slower = metrics(0.962, (1.10, 1.20, 1.30), 1_000_000)  # resolved, but 4 microseconds
    assert choose(tiny, [(built("int8-dynamic"), slower)], CompressionPolicy(), task="classification").kind == (
        "int8-dynamic")
    assert choose(ORIGINAL, [(built("int8-dynamic"), slower)], CompressionPolicy(),
                  task="classification").kind == "original"  # 0.4 ms at a 2 ms p50 does decide
    close = metrics(0.962, (1.01, 1.03, 1.04), 1_000_000)  # resolved, 3% slower
    assert choose(ORIGINAL, [(built("int8-dynamic"), close)], CompressionPolicy(), task="classification").kind == (
        "int8-dynamic")


def test_a_memory_budget_excludes_a_candidate_whatever_its_speed() -> None:
    candidates = [(built("int8-static"), metrics(0.96, (0.4, 0.5, 0.6), 1_000_000, memory=90e6)),
                  (built("int8-dynamic"), metrics(0.96, (0.6, 0.7, 0.8), 1_000_000, memory=30e6)),
                  (built("fp16"), metrics(0.96, (0.6, 0.7, 0.8), 2_000_000))]
    choice = choose(ORIGINAL, candidates, CompressionPolicy(max_peak_memory_bytes=50_000_000), task="classification")
    assert choice.kind == "int8-dynamic"
    assert choice.reasons[0] == "peak memory 90 MB over the budget of 50 MB"
    assert choice.reasons[2] == "no peak memory measured (the policy has a memory budget)"


def test_without_intervals_the_p50_ratio_counts_as_exact() -> None:
    plain = {"accuracy": Measurement(0.96, "ratio"), "latency_p50_ms": Measurement(1.0, "ms"),
             "size_bytes": Measurement(2_000_000, "bytes")}
    choice = choose(ORIGINAL, [(built("int8-dynamic"), plain)], CompressionPolicy(), task="classification")
    assert choice.kind == "int8-dynamic"
    assert choice.summary.startswith("int8-dynamic: measurably faster than the original (latency x0.50 (0.50 to 0.50)")


def test_embedding_budget_uses_cosine_and_neighbours() -> None:
    def embedding(cosine: float, top5: float, p50: float) -> dict[str, Measurement]:
        return {
            "parity_cosine_mean": Measurement(cosine, "ratio"),
            "top5_agreement": Measurement(top5, "ratio"),
            "latency_p50_ms": Measurement(p50, "ms"),
            "size_bytes": Measurement(1e6, "bytes"),
        }

    original = {"latency_p50_ms": Measurement(10.0, "ms"), "size_bytes": Measurement(4e6, "bytes")}
    candidates = [
        (built("int8-dynamic"), embedding(0.9915, 0.9, 3.0)),
        (built("int8-mixed"), embedding(0.998, 0.93, 4.0)),
        (built("int8-static"), embedding(0.999, 0.97, 5.0)),
    ]
    choice = choose(original, candidates, CompressionPolicy(min_top5_agreement=0.95), task="embedding")
    assert choice.kind == "int8-static"
    assert choice.reasons[:2] == [
        "cosine to the original 0.9915 below budget 0.9950",
        "top-5 neighbour agreement 0.930 below budget 0.950",
    ]
