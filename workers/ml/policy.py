"""What a release may trade for speed and size: the compression policy and its accuracy budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from workers.ml.evalset import EvalSet
from workers.ml.evaluate import Measurement, Progress, Task

Metrics = Mapping[str, Measurement]

KINDS = ("pruned", "int8-dynamic", "int8-static", "int8-mixed", "fp16", "distilled")


@dataclass(frozen=True)
class CompressionPolicy:
    """Which candidates to build, how, and the accuracy budget they must stay inside.

    Budget by task, always measured against the original model on the same data:
    classification: accuracy may drop by at most ``max_accuracy_drop`` (absolute; top-1
    agreement with the original must stay above ``1 - max_accuracy_drop`` without labels);
    regression: RMSE may grow by at most ``max_rmse_increase`` (relative);
    language model: perplexity at most ``max_perplexity_increase`` (relative) above the fp32
    model's, and at least ``min_greedy_agreement`` of the prompts continued exactly as it does;
    embedding: mean cosine similarity to the original's embeddings at least ``min_cosine``,
    and, when ``min_top5_agreement`` is set, at least that share of each sample's 5 nearest
    neighbours in the evaluation set found by the original too.
    Memory: with ``max_peak_memory_bytes`` a candidate whose measured peak memory (session plus a
    batch run, :func:`workers.ml.memory.peak_memory`) is higher is out, whatever its speed.
    """

    kinds: tuple[str, ...] = KINDS
    max_accuracy_drop: float = 0.01
    max_rmse_increase: float = 0.05
    min_cosine: float = 0.995
    min_top5_agreement: float | None = None
    max_peak_memory_bytes: int | None = None
    max_perplexity_increase: float = 0.03  # language models, relative to the fp32 model
    min_greedy_agreement: float = 0.9  # language models: share of prompts with the fp32 model's continuation
    prune_sparsity: float = 0.5  # share of hidden units (structured) or weights (unstructured)
    calibration_samples: int = 64  # evaluation samples used to calibrate and search
    static_reduce_range: bool = True  # 7-bit weights for static int8 (CPUs without VNNI)
    distill_temperature: float = 4.0
    distill_epochs: int = 300
    distill_learning_rate: float = 0.01
    student_architecture: str | None = None
    student_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionPolicy:
        """A policy from stored JSON; unknown keys, kinds or out-of-range values raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown compression policy keys: {', '.join(unknown)}")
        values = dict(data)
        if "kinds" in values:
            values["kinds"] = tuple(values["kinds"])
        policy = cls(**values)
        policy.check()
        return policy

    def check(self) -> None:
        bad = [kind for kind in self.kinds if kind not in KINDS]
        if bad:
            raise ValueError(f"unknown candidate kinds {', '.join(bad)}; known: {', '.join(KINDS)}")
        if not 0 < self.prune_sparsity < 1:
            raise ValueError("prune_sparsity must be between 0 and 1")
        if not 0 <= self.max_accuracy_drop < 1 or self.max_rmse_increase < 0:
            raise ValueError("the accuracy budget must be non-negative (and a drop below 1)")
        if not -1 <= self.min_cosine <= 1:
            raise ValueError("min_cosine must be between -1 and 1")
        if self.min_top5_agreement is not None and not 0 <= self.min_top5_agreement <= 1:
            raise ValueError("min_top5_agreement must be between 0 and 1")
        if self.max_peak_memory_bytes is not None and self.max_peak_memory_bytes <= 0:
            raise ValueError("max_peak_memory_bytes must be positive")
        if self.calibration_samples < 1 or self.distill_epochs < 1 or self.distill_temperature <= 0:
            raise ValueError("calibration_samples, distill_epochs and distill_temperature must be positive")


@dataclass(frozen=True)
class BuildContext:
    """Everything a candidate builder may use."""

    evalset: EvalSet
    task: Task
    policy: CompressionPolicy
    device: str
    progress: Progress


def budget_violation(
    task: Task,
    original: Metrics,
    candidate: Metrics,
    policy: CompressionPolicy,
) -> str | None:
    """Why ``candidate`` falls outside the accuracy budget, or None when it is inside."""
    if task == "classification":
        return _classification(original, candidate, policy)
    if task == "regression":
        return _regression(original, candidate, policy)
    if task == "language_model":
        return _language_model(original, candidate, policy)
    return _embedding(candidate, policy)


def _language_model(original: Metrics, candidate: Metrics, policy: CompressionPolicy) -> str | None:
    if "perplexity" not in original or "perplexity" not in candidate:
        return "no perplexity measured"
    base, value = original["perplexity"].value, candidate["perplexity"].value
    ceiling = base * (1 + policy.max_perplexity_increase)
    if value > ceiling + 1e-12:
        return (f"perplexity {value:.4g} above budget {ceiling:.4g} "
                f"(original {base:.4g} + {policy.max_perplexity_increase:.0%})")
    if "greedy_exact_match" not in candidate:
        return "no greedy agreement measured"
    agreement = candidate["greedy_exact_match"].value
    if agreement < policy.min_greedy_agreement - 1e-9:
        return f"greedy agreement {agreement:.3f} below budget {policy.min_greedy_agreement:.3f}"
    return None


def _classification(original: Metrics, candidate: Metrics, policy: CompressionPolicy) -> str | None:
    drop = policy.max_accuracy_drop
    if "accuracy" in original and "accuracy" in candidate:
        base, value = original["accuracy"].value, candidate["accuracy"].value
        floor = base - drop
        if value < floor - 1e-9:
            return f"accuracy {value:.3f} below budget {floor:.3f} (original {base:.3f} - {drop:g})"
        return None
    if "top1_agreement" in candidate:
        value = candidate["top1_agreement"].value
        if value < 1 - drop - 1e-9:
            return f"top-1 agreement with the original {value:.3f} below budget {1 - drop:.3f}"
        return None
    return "no accuracy or agreement measured"


def _regression(original: Metrics, candidate: Metrics, policy: CompressionPolicy) -> str | None:
    if "rmse" not in original or "rmse" not in candidate:
        return "no RMSE measured"
    base, value = original["rmse"].value, candidate["rmse"].value
    ceiling = base * (1 + policy.max_rmse_increase)
    if value > ceiling + 1e-12:
        return f"rmse {value:.4g} above budget {ceiling:.4g} (original {base:.4g} + {policy.max_rmse_increase:.0%})"
    return None


def _embedding(candidate: Metrics, policy: CompressionPolicy) -> str | None:
    if "parity_cosine_mean" not in candidate:
        return "no cosine similarity to the original measured"
    value = candidate["parity_cosine_mean"].value
    if value < policy.min_cosine:
        return f"cosine to the original {value:.4f} below budget {policy.min_cosine:.4f}"
    floor = policy.min_top5_agreement
    if floor is not None:
        if "top5_agreement" not in candidate:
            return "no top-5 neighbour agreement measured"
        agreement = candidate["top5_agreement"].value
        if agreement < floor:
            return f"top-5 neighbour agreement {agreement:.3f} below budget {floor:.3f}"
    return None
