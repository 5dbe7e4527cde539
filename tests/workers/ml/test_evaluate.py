from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from tests.workers.ml.conftest import Digits, TrainedMLP
from tests.workers.ml.onnx_builders import log_model, mlp_forward, mlp_graph, save_model
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import EvaluationError, Measurement, evaluate
from workers.ml.validate import ModelInvalid

TIMING = {
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "throughput_per_s",
    "size_bytes",
    "peak_memory_bytes",
}


def linear(tmp_path: Path, w: list[list[float]], b: list[float], **kwargs: object) -> Path:
    graph = mlp_graph([np.array(w, np.float32)], [np.array(b, np.float32)], **kwargs)
    return save_model(graph, tmp_path / "linear.onnx")


def test_classification_accuracy_and_parity_are_exact(tmp_path: Path) -> None:
    path = linear(tmp_path, [[1, 0], [0, 1]], [0, 0])
    x = np.array([[2, 1], [0, 3], [5, 4], [1, 2]], np.float32)  # predicts 0, 1, 0, 1
    reference = x.copy()
    reference[3] = [3, 2]  # the reference predicted class 0 for the last sample
    result = evaluate(path, EvalSet({"": x}, np.array([0, 1, 1, 1])), "classification", reference_outputs=reference)
    assert result.metrics["accuracy"] == Measurement(0.75, "ratio")
    assert result.metrics["top1_agreement"] == Measurement(0.75, "ratio")
    assert result.metrics["parity_max_abs_diff"] == Measurement(2.0, "abs")
    assert set(result.metrics) == {"accuracy", "top1_agreement", "parity_max_abs_diff"} | TIMING
    assert result.outputs.tolist() == x.tolist()
    assert result.device == "cpu"


def test_regression_errors_are_exact(tmp_path: Path) -> None:
    path = linear(tmp_path, [[2]], [1])
    data = EvalSet({"x": np.array([[0], [1], [2]], np.float64)}, np.array([1.0, 3.0, 6.0]))
    found = evaluate(path, data, "regression").metrics
    assert found["rmse"] == Measurement(pytest.approx(math.sqrt(1 / 3)), "target")
    assert found["mae"] == Measurement(pytest.approx(1 / 3), "target")


def test_embedding_cosines_against_labels_and_reference(tmp_path: Path) -> None:
    path = linear(tmp_path, [[1, 0], [0, 1]], [0, 0])
    x = np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 3], [1, 2], [3, 1]], np.float32)
    labels = x.copy()
    labels[1] = [1, 1]  # cosine of (0, 1) and (1, 1) is 1/sqrt(2)
    found = evaluate(path, EvalSet({"": x}, labels), "embedding", reference_outputs=x).metrics
    assert found["cosine_min"].value == pytest.approx(1 / math.sqrt(2))
    assert found["cosine_mean"].value == pytest.approx((6 + 1 / math.sqrt(2)) / 7)
    assert found["parity_cosine_mean"] == Measurement(pytest.approx(1.0), "ratio")
    assert found["parity_cosine_min"].value == pytest.approx(1.0)
    assert found["top5_agreement"] == Measurement(1.0, "ratio")
    assert found["parity_max_abs_diff"] == Measurement(0.0, "abs")


def test_digits_mlp_matches_its_training(digits: Digits, digits_mlp: TrainedMLP) -> None:
    data = EvalSet({"": digits.x_test}, digits.y_test)
    steps: list[tuple[float, str]] = []
    result = evaluate(digits_mlp.path, data, "classification", progress=lambda p, s: steps.append((p, s)))
    assert result.metrics["accuracy"].value == pytest.approx(digits_mlp.test_accuracy)
    expected = mlp_forward(digits.x_test, digits_mlp.weights, digits_mlp.biases)
    np.testing.assert_allclose(result.outputs, expected, rtol=1e-4, atol=1e-4)
    m = {name: value for name, (value, _unit) in result.metrics.items()}
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_p99_ms"]
    assert m["throughput_per_s"] > 0
    assert m["size_bytes"] == digits_mlp.path.stat().st_size
    # The session, its weights and its run buffers were touched: more than nothing, at most this
    # process's own high-water mark (how long evaluation takes is bench/compression.py's business).
    high_water = int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
    assert 0 < m["peak_memory_bytes"] <= high_water
    assert [p for p, _ in steps] == sorted(p for p, _ in steps)
    assert steps[0][0] == 0 and steps[-1] == (100, "evaluated")


def test_fixed_batch_models_run_in_their_batch_size(tmp_path: Path) -> None:
    path = linear(tmp_path, [[1, 0], [0, 1]], [0, 0], batch=2)
    x = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    found = evaluate(path, EvalSet({"": x}, np.array([0, 1, 1, 1])), "classification").metrics
    assert found["accuracy"].value == 0.75


def test_non_finite_outputs_are_an_error(tmp_path: Path) -> None:
    path = log_model(tmp_path / "log.onnx")
    x = np.array([[1, 2], [0, 1]], np.float32)
    with pytest.raises(EvaluationError, match="produced 1 NaN or infinite output values"):
        evaluate(path, EvalSet({"": x}), "regression")


def test_misfit_shapes_and_tasks_are_errors(tmp_path: Path) -> None:
    path = linear(tmp_path, [[1, 0], [0, 1]], [0, 0])
    x = np.ones((3, 2), np.float32)
    with pytest.raises(EvaluationError, match="unknown task 'ranking'"):
        evaluate(path, EvalSet({"": x}), "ranking")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="outputs \\[3, 2\\] do not match targets \\[3\\]"):
        evaluate(path, EvalSet({"": x}, np.ones(3)), "regression")
    with pytest.raises(EvaluationError, match="reference outputs \\[3, 3\\] differ in shape"):
        evaluate(path, EvalSet({"": x}), "embedding", reference_outputs=np.ones((3, 3)))
    with pytest.raises(ModelInvalid, match="the model takes float32, the data is int64"):
        evaluate(path, EvalSet({"": x.astype(np.int64)}), "embedding")


def test_a_cuda_request_falls_back_to_the_cpu(tmp_path: Path) -> None:
    path = linear(tmp_path, [[1, 0], [0, 1]], [0, 0])
    result = evaluate(path, EvalSet({"": np.eye(2, dtype=np.float32)}), "embedding", device="cuda:0")
    assert result.device == "cpu"
