from __future__ import annotations

import pytest

from workers.ml.evaluate import Measurement
from workers.ml.policy import KINDS, CompressionPolicy, budget_violation


def test_from_dict_reads_stored_json_and_rejects_mistakes() -> None:
    policy = CompressionPolicy.from_dict({"kinds": ["int8-mixed"], "min_cosine": 0.99, "student_config": {"a": 1}})
    assert (policy.kinds, policy.min_cosine, policy.student_config) == (("int8-mixed",), 0.99, {"a": 1})
    assert CompressionPolicy().kinds == KINDS
    with pytest.raises(ValueError, match="unknown compression policy keys: colour"):
        CompressionPolicy.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match="unknown candidate kinds int4"):
        CompressionPolicy.from_dict({"kinds": ["int4"]})
    with pytest.raises(ValueError, match="prune_sparsity must be between 0 and 1"):
        CompressionPolicy.from_dict({"prune_sparsity": 1.5})
    with pytest.raises(ValueError, match="min_top5_agreement must be between 0 and 1"):
        CompressionPolicy.from_dict({"min_top5_agreement": 2})


def test_regression_budget_is_relative_to_the_original() -> None:
    original = {"rmse": Measurement(2.0, "target")}
    policy = CompressionPolicy(max_rmse_increase=0.05)
    assert budget_violation("regression", original, {"rmse": Measurement(2.1, "target")}, policy) is None
    assert (
        budget_violation("regression", original, {"rmse": Measurement(2.2, "target")}, policy)
        == "rmse 2.2 above budget 2.1 (original 2 + 5%)"
    )
    assert budget_violation("regression", original, {}, policy) == "no RMSE measured"


def test_classification_without_labels_uses_agreement() -> None:
    policy = CompressionPolicy(max_accuracy_drop=0.02)
    low = {"top1_agreement": Measurement(0.97, "ratio")}
    assert budget_violation("classification", {}, low, policy) == (
        "top-1 agreement with the original 0.970 below budget 0.980"
    )
    assert budget_violation("classification", {}, {}, policy) == "no accuracy or agreement measured"
