"""ONNX-ML models (scikit-learn, LightGBM, XGBoost converted to ONNX) are validated, evaluated and
compressed where compression applies; models whose outputs cannot be judged fail with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.workers.ml import sklearn_builders as sk
from tests.workers.ml.onnx_builders import mlp_graph, save_model
from workers.ml.compress import build_candidates
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import EvaluationError, evaluate
from workers.ml.policy import CompressionPolicy
from workers.ml.validate import ModelInvalid, TensorSpec, validate_model

MAP = "seq(map(int64,tensor(float)))"


def write(tmp_path: Path, data: bytes, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def linear_data(count: int) -> EvalSet:
    """Two features; the ml-only classifier's class is the argmax of (x0, x1, -x0-x1)."""
    x = np.random.default_rng(0).normal(size=(count, 2)).astype(np.float32)
    return EvalSet({"": x}, np.argmax(np.stack([x[:, 0], x[:, 1], -x.sum(axis=1)], axis=1), axis=1))


@pytest.mark.parametrize("builder", [sk.scaled_logistic_regression, sk.random_forest, sk.gradient_boosting,
                                     sk.lightgbm_classifier, sk.xgboost_classifier],
                         ids=["scaler+logistic", "random-forest", "gradient-boosting", "lightgbm", "xgboost"])
def test_converted_classifiers_score_what_the_framework_scores(tmp_path: Path, builder) -> None:
    model = builder()
    path = write(tmp_path, model.onnx_bytes)
    data = EvalSet({"": model.x_test}, model.y_test)
    signature = validate_model(path, data, "classification")
    assert signature.outputs[0].dtype == "int64"
    evaluation = evaluate(path, data, "classification", latency_runs=5)
    assert evaluation.metrics["accuracy"].value == pytest.approx(model.accuracy, abs=1e-12)
    assert evaluation.outputs.dtype == np.int64 and len(evaluation.outputs) == len(model.y_test)


def test_a_model_of_ai_onnx_ml_operators_only_with_a_fixed_batch_and_a_zipmap(tmp_path: Path) -> None:
    path = write(tmp_path, sk.ml_only_classifier(batch=3))
    data = linear_data(10)  # 3 full batches and one padded with two repeated rows
    signature = validate_model(path, data, "classification")
    assert signature.opset is None
    assert signature.inputs == [TensorSpec("X", "float32", [3, 2])]
    assert signature.outputs == [TensorSpec("label", "int64", [3]), TensorSpec("probabilities", MAP, [])]
    evaluation = evaluate(path, data, "classification", latency_runs=4)
    assert evaluation.metrics["accuracy"] == (1.0, "ratio")
    assert evaluation.outputs.tolist() == data.labels.tolist()


def test_probabilities_alone_are_scored_by_their_class_labels(tmp_path: Path) -> None:
    model = onnx.load_from_string(sk.ml_only_classifier(batch=3, classes=[4, 7, 9]))
    del model.graph.output[0]  # only the ZipMap is left: its keys are the classes
    path = write(tmp_path, model.SerializeToString())
    data = linear_data(7)
    labels = np.array([4, 7, 9])[data.labels]
    evaluation = evaluate(path, EvalSet(data.inputs, labels), "classification", latency_runs=2)
    assert evaluation.metrics["accuracy"] == (1.0, "ratio")


@pytest.mark.parametrize(("variant", "message"), [
    ("string-classes", "the model's classes are text \\(0, 1, 2\\) but the evaluation labels are numbers"),
    ("unknown-labels", "the evaluation labels \\[5\\] are not among the model's classes \\[0, 1, 2\\]"),
    ("no-outputs", "the model has no outputs"),
    ("conflicting-batches", "the model's inputs fix different batch sizes \\(a: 3, b: 4\\)"),
    ("batch-of-zero", "the model fixes its batch size at 0: it can take no sample"),
    ("rows-not-per-sample", "output 'y' has shape \\[1, 2\\] for a batch of 3 samples"),
])
def test_outputs_that_cannot_be_judged_are_refused_with_the_reason(tmp_path: Path, variant: str,
                                                                   message: str) -> None:
    data = linear_data(6)
    if variant == "string-classes":
        path = write(tmp_path, sk.ml_only_classifier(string_classes=True))
    elif variant == "unknown-labels":
        path = write(tmp_path, sk.ml_only_classifier())
        data = EvalSet(data.inputs, np.where(np.arange(6) == 2, 5, data.labels))
    elif variant == "no-outputs":
        model = onnx.load_from_string(sk.ml_only_classifier())
        del model.graph.output[:]
        path = write(tmp_path, model.SerializeToString())
    elif variant == "conflicting-batches":
        graph = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["y"], axis=0)], "two",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 2]),
                                   helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 2])])
        path = save_model(graph, tmp_path / "two.onnx")
        data = EvalSet({"a": data.inputs[""], "b": data.inputs[""]})
    elif variant == "batch-of-zero":
        path = save_model(mlp_graph([np.eye(2, dtype=np.float32)], [np.zeros(2, np.float32)], batch=0),
                          tmp_path / "zero.onnx")
    else:  # one row out, whatever the batch: the rows cannot be told apart
        graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], keepdims=1, axes=[0])], "mean",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
        path = save_model(graph, tmp_path / "mean.onnx", opset=17)
    with pytest.raises(ModelInvalid, match=message):
        validate_model(path, data, "classification")
    if variant in ("string-classes", "unknown-labels"):
        with pytest.raises(EvaluationError, match=message):
            evaluate(path, data, "classification", latency_runs=1)


def test_compression_that_cannot_act_on_tree_ensembles_says_not_applicable_and_why(tmp_path: Path) -> None:
    model = sk.random_forest()
    path = write(tmp_path, model.onnx_bytes)
    candidates = build_candidates(path, EvalSet({"": model.x_test}, model.y_test), "classification",
                                  CompressionPolicy(kinds=("pruned", "int8-dynamic", "int8-static", "fp16")),
                                  tmp_path / "out")
    outcomes = {c.kind: c.outcome for c in candidates}
    held = "; its parameters live in ai.onnx.ml operators (TreeEnsembleClassifier, ZipMap)"
    assert outcomes == {
        "pruned": "not applicable: the model has no MatMul, Gemm, Conv or attention layer with constant weights "
                  "to prune" + held,
        "int8-dynamic": "not applicable: the model has no MatMul, Gemm, Conv or attention layer with constant "
                        "weights to quantize" + held,
        "int8-static": "not applicable: the model has no MatMul, Gemm, Conv or attention layer with constant "
                       "weights to quantize" + held,
        "fp16": "not applicable: the model has no float32 weights to convert to float16" + held,
    }
    assert all(c.path is None and c.not_applicable for c in candidates)


def test_a_pipeline_of_both_domains_gets_every_candidate_with_the_ml_operators_kept_in_float32(tmp_path: Path) -> None:
    model = sk.scaled_mlp()
    path = write(tmp_path, model.onnx_bytes)
    data = EvalSet({"": model.x_test}, model.y_test)
    kinds = ("pruned", "int8-dynamic", "int8-static", "fp16")
    candidates = build_candidates(path, data, "classification", CompressionPolicy(kinds=kinds), tmp_path / "out")
    assert [(c.kind, c.outcome) for c in candidates] == [(kind, "built") for kind in kinds]
    original = evaluate(path, data, "classification", latency_runs=1, measure_memory=False)
    assert original.metrics["accuracy"].value == pytest.approx(model.accuracy, abs=1e-12)
    half_path = candidates[-1].path
    assert half_path is not None
    half = evaluate(half_path, data, "classification", reference_outputs=original.outputs,
                    latency_runs=1, measure_memory=False)
    assert (half.metrics["accuracy"].value, half.metrics["top1_agreement"].value) == (model.accuracy, 1.0)
    ops = {(node.domain, node.op_type) for node in onnx.load(str(half_path)).graph.node}
    assert {("ai.onnx.ml", "Scaler"), ("ai.onnx.ml", "ZipMap"), ("", "Cast")} <= ops
