from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.workers.ml.conftest import Digits, TinyBert, TrainedMLP
from workers.ml import compress
from workers.ml.candidates import graph
from workers.ml.compress import build_candidates
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import evaluate
from workers.ml.policy import CompressionPolicy
from workers.ml.runtime import model_size_bytes

STUDENT = {"layers": [64, 24, 10]}


@pytest.fixture(scope="module")
def digits_candidates(digits: Digits, digits_mlp: TrainedMLP, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    data = EvalSet({"": digits.x_test}, digits.y_test, {"inputs": digits.x_train, "labels": digits.y_train})
    policy = CompressionPolicy(student_architecture="mlp", student_config=STUDENT, distill_epochs=120)
    steps: list[tuple[float, str]] = []
    out = tmp_path_factory.mktemp("candidates")
    built = build_candidates(
        digits_mlp.path, data, "classification", policy, out, progress=lambda p, s: steps.append((p, s))
    )
    return data, {c.kind: c for c in built}, steps


def test_every_kind_is_built_validated_and_reported(digits_candidates: tuple) -> None:
    _, built, steps = digits_candidates
    assert list(built) == ["pruned", "int8-dynamic", "int8-static", "int8-mixed", "fp16", "distilled"]
    assert {kind: c.error for kind, c in built.items()} == dict.fromkeys(built)
    percents = [p for p, _ in steps]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert steps[-1][1] == "distilled: built"


def test_structured_pruning_removes_half_the_hidden_units(digits_candidates: tuple, digits_mlp: TrainedMLP) -> None:
    _, built, _ = digits_candidates
    pruned = built["pruned"]
    assert pruned.recipe["method"] == "structured: whole hidden units"
    assert pruned.recipe["hidden_units_removed"] == {"w0": 64}
    shapes = {t.name: list(t.dims) for t in onnx.load(str(pruned.path)).graph.initializer}
    assert (shapes["w0"], shapes["b0"], shapes["w1"]) == ([64, 64], [64], [64, 10])


def test_quantized_candidates_are_smaller_and_accurate(digits_candidates: tuple, digits_mlp: TrainedMLP) -> None:
    data, built, _ = digits_candidates
    original = model_size_bytes(digits_mlp.path)
    # small graphs: fixed overheads (names, scales, smoothing vectors) weigh more than in big ones
    for kind, ratio in (("int8-dynamic", 3.0), ("int8-static", 2.5), ("int8-mixed", 2.5), ("fp16", 1.8)):
        assert original / model_size_bytes(built[kind].path) > ratio, kind
        accuracy = evaluate(built[kind].path, data, "classification", latency_runs=5).metrics["accuracy"].value
        assert accuracy >= digits_mlp.test_accuracy - 0.01, kind
    assert built["int8-static"].recipe["weights"] == "int8 per channel, 7-bit range"
    mixed = built["int8-mixed"].recipe
    assert set(mixed["sensitivity"]) == {"MatMul_0", "MatMul_3"}
    assert mixed["search"]["0"] == "inside budget" and mixed["fp32_arithmetic_layers"] == []


def test_mixed_int8_layers_use_signed_weights_and_its_search_sees_the_evaluations_batches(
    digits_candidates: tuple, digits_mlp: TrainedMLP
) -> None:
    data, built, _ = digits_candidates
    model = onnx.load(str(built["int8-mixed"].path))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    kernels = [weights[node.input[1]] for node in model.graph.node if node.op_type == "MatMulInteger"]
    assert kernels == [onnx.TensorProto.INT8] * 2  # uint8 x int8: the fast kernels on AVX2 CPUs
    feeds = graph.calibration_feeds(digits_mlp.path, data, 100, 64, whole_batches=False)
    assert [graph.samples_in(feed) for feed in feeds] == [64, 36]
    assert [graph.samples_in(feed) for feed in graph.calibration_feeds(digits_mlp.path, data, 100, 64)] == [64]


def test_distilled_student_has_five_times_fewer_weights_within_a_point(
    digits_candidates: tuple, digits_mlp: TrainedMLP
) -> None:
    data, built, _ = digits_candidates
    student = built["distilled"]
    assert student.recipe["student_parameters"] == 64 * 24 + 24 + 24 * 10 + 10
    assert student.recipe["teacher_parameters"] == 64 * 128 + 128 + 128 * 10 + 10
    assert student.recipe["teacher_parameters"] / student.recipe["student_parameters"] > 5
    assert model_size_bytes(digits_mlp.path) / model_size_bytes(student.path) > 3  # + ~4 kB of graph
    accuracy = evaluate(student.path, data, "classification", latency_runs=5).metrics["accuracy"].value
    assert accuracy >= digits_mlp.test_accuracy - 0.01


def test_a_failing_candidate_does_not_stop_the_others(
    digits: Digits, digits_mlp: TrainedMLP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(source: Path, out: Path, ctx: object) -> dict:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setitem(compress.BUILDERS, "fp16", broken)
    policy = CompressionPolicy(kinds=("fp16", "distilled", "int8-dynamic"))
    built = build_candidates(digits_mlp.path, EvalSet({"": digits.x_test}), "classification", policy, tmp_path)
    assert [(c.kind, c.path is None, c.error) for c in built] == [
        ("fp16", True, "RuntimeError: kaboom"),
        ("distilled", True, "not applicable: the policy names no student architecture"),
        ("int8-dynamic", False, None),
    ]


def test_mixed_precision_on_a_transformer(tiny_bert: TinyBert, tiny_bert_onnx: Path, tmp_path: Path) -> None:
    policy = CompressionPolicy(kinds=("int8-mixed", "pruned"), min_cosine=0.999, calibration_samples=32)
    mixed, pruned = build_candidates(tiny_bert_onnx, tiny_bert.evalset, "embedding", policy, tmp_path)
    assert mixed.error is None and pruned.error is None
    recipe = mixed.recipe
    assert len(recipe["sensitivity"]) == 1 + 2 + 6  # embedding, 2 attentions, 6 matmuls
    assert recipe["calibration_samples"] == 32
    reference = evaluate(tiny_bert_onnx, tiny_bert.evalset, "embedding").outputs
    found = evaluate(mixed.path, tiny_bert.evalset, "embedding", reference_outputs=reference).metrics
    assert found["parity_cosine_mean"].value >= 0.999
    layers = graph.find_layers(graph.load(tiny_bert_onnx))
    total = sum(
        int(np.prod(graph.weight_matrix(graph.load(tiny_bert_onnx), layer).shape))
        for layer in layers
        if layer.kind != "embedding"
    )
    assert pruned.recipe["method"] == "unstructured: global L1 magnitude"
    assert pruned.recipe["weights_zeroed"] == total // 2


def test_onnx_runtimes_pre_processing_advice_is_logged_once_per_process(
    digits_mlp: TrainedMLP, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.ml.candidates import quantize

    monkeypatch.setattr(quantize._AdviceOnce, "said", False)
    for i in range(3):
        quantize.dynamic_int8(quantize.prepared(digits_mlp.path), tmp_path / f"int8-{i}.onnx")
    assert sum("pre-processing before quantization" in r.getMessage() for r in caplog.records) == 1
