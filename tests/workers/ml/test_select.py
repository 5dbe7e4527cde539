from __future__ import annotations

from pathlib import Path

from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement
from workers.ml.policy import CompressionPolicy
from workers.ml.select import choose


def metrics(accuracy: float, p50: float, size: float) -> dict[str, Measurement]:
    return {
        "accuracy": Measurement(accuracy, "ratio"),
        "latency_p50_ms": Measurement(p50, "ms"),
        "size_bytes": Measurement(size, "bytes"),
    }


def built(kind: str) -> Candidate:
    return Candidate(kind, Path(f"{kind}.onnx"), {})


def test_fastest_inside_the_budget_wins_and_every_loser_says_why() -> None:
    original = metrics(0.962, 2.0, 4_000_000)
    candidates = [
        (built("int8-static"), metrics(0.941, 0.9, 1_000_000)),
        (built("int8-dynamic"), metrics(0.958, 1.3, 1_000_000)),
        (built("fp16"), metrics(0.962, 2.1, 2_000_000)),
        (built("int8-mixed"), metrics(0.960, 1.25, 1_100_000)),
        (Candidate("distilled", None, {}, "not applicable: the policy names no student architecture"), None),
        (built("pruned"), None),
    ]
    choice = choose(original, candidates, CompressionPolicy(), task="classification")
    assert (choice.kind, choice.index) == ("int8-dynamic", 1)
    assert choice.reasons == [
        "accuracy 0.941 below budget 0.952 (original 0.962 - 0.01)",
        None,
        "slower: p50 2.1 ms vs 1.3 ms (int8-dynamic)",
        "as fast (p50 1.25 ms vs 1.3 ms, within 10%) but larger: 1.1 MB vs 1 MB",
        "not built: not applicable: the policy names no student architecture",
        "not evaluated",
    ]
    assert choice.original_reason == "slower: p50 2 ms vs 1.3 ms (int8-dynamic)"
    assert choice.summary == "int8-dynamic: fastest inside the accuracy budget (p50 1.3 ms, 1 MB)"


def test_the_original_stays_when_nothing_beats_it() -> None:
    original = metrics(0.9, 1.0, 5_000)
    choice = choose(original, [(built("fp16"), metrics(0.9, 3.0, 3_000))], CompressionPolicy(), task="classification")
    assert (choice.kind, choice.index, choice.original_reason) == ("original", None, None)
    assert choice.reasons == ["slower: p50 3 ms vs 1 ms (original)"]


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
