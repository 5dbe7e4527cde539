from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.workers.ml.onnx_builders import log_model, mlp_graph, save_model
from workers.ml.evalset import EvalSet
from workers.ml.validate import ModelInvalid, TensorSpec, match_inputs, validate_model

W = [np.eye(3, 2, dtype=np.float32)]
B = [np.zeros(2, np.float32)]


def model(tmp_path: Path, **kwargs: object) -> Path:
    return save_model(mlp_graph(W, B, **kwargs), tmp_path / "m.onnx")


def test_signature_of_a_valid_model(tmp_path: Path) -> None:
    path = model(tmp_path)
    signature = validate_model(path, EvalSet({"": np.ones((4, 3), np.float32)}))
    assert signature.inputs == [TensorSpec("x", "float32", ["batch", 3])]
    assert signature.outputs == [TensorSpec("y", "float32", ["batch", 2])]
    assert signature.opset == 17
    assert signature.size_bytes == path.stat().st_size


def test_safe_casts_are_applied() -> None:
    specs = [TensorSpec("x", "float32", [None, 3]), TensorSpec("ids", "int64", [None, 2])]
    data = EvalSet({"x": np.ones((2, 3), np.float64), "ids": np.ones((2, 2), np.int32), "more": np.ones(2)})
    feeds = match_inputs(specs, data)
    assert {k: v.dtype.name for k, v in feeds.items()} == {"x": "float32", "ids": "int64"}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"z": np.ones((2, 3), np.float32)},
            "model input 'x' is missing from the evaluation data \\(it has: z\\)",
        ),
        ({"x": np.ones((2, 3), np.int64)}, "input 'x': the model takes float32, the data is int64"),
        ({"x": np.ones((2, 3, 1), np.float32)}, "the model takes rank 2 \\[batch, 3\\], the data has rank 3"),
        ({"x": np.ones((2, 4), np.float32)}, "dimension 1 must be 3 \\[batch, 3\\], the data has 4"),
    ],
)
def test_rejects_data_that_does_not_fit(tmp_path: Path, inputs: dict, message: str) -> None:
    with pytest.raises(ModelInvalid, match=message):
        validate_model(model(tmp_path), EvalSet(inputs))


def test_a_fixed_batch_larger_than_the_data_or_not_dividing_it_is_padded(tmp_path: Path) -> None:
    path = model(tmp_path, batch=2)
    assert validate_model(path, EvalSet({"x": np.ones((4, 3), np.float32)})).inputs[0].shape == [2, 3]
    assert validate_model(path, EvalSet({"x": np.ones((3, 3), np.float32)})).inputs[0].shape == [2, 3]
    assert validate_model(path, EvalSet({"x": np.ones((1, 3), np.float32)})).inputs[0].shape == [2, 3]


def test_unnamed_inputs_need_a_single_input_model(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    path = save_model(graph, tmp_path / "add.onnx")
    with pytest.raises(ModelInvalid, match="one unnamed 'inputs' array but the model takes 2 inputs \\(a, b\\)"):
        validate_model(path, EvalSet({"": np.ones((2, 2), np.float32)}))


def test_rejects_garbage_and_broken_graphs(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(ModelInvalid, match="not a valid ONNX model"):
        validate_model(garbage, EvalSet({"": np.ones((1, 3), np.float32)}))
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    with pytest.raises(ModelInvalid, match="not a valid ONNX model"):
        validate_model(save_model(graph, tmp_path / "broken.onnx"), EvalSet({"": np.ones((1, 3), np.float32)}))
    with pytest.raises(ModelInvalid, match="does not exist"):
        validate_model(tmp_path / "nope.onnx", EvalSet({"": np.ones((1, 3), np.float32)}))


def test_rejects_models_with_non_finite_output(tmp_path: Path) -> None:
    path = log_model(tmp_path / "log.onnx")
    with pytest.raises(ModelInvalid, match="output 'y' is NaN or infinite on the first sample"):
        validate_model(path, EvalSet({"": np.array([[0.0, 1.0]], np.float32)}))


def test_rejects_models_that_fail_at_run_time(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor("s", TensorProto.INT64, [2], [2, 2])],
    )
    path = save_model(graph, tmp_path / "reshape.onnx")
    with pytest.raises(ModelInvalid, match="the model fails on the first sample"):
        validate_model(path, EvalSet({"": np.ones((1, 3), np.float32)}))
