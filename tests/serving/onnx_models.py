"""Small ONNX models built with onnx.helper for the serving and shipping tests (and bench/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# y = x @ WEIGHT + BIAS, so every expected output can be computed exactly by hand.
WEIGHT = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
BIAS = np.array([0.5, -0.5, 0.0], dtype=np.float32)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def linear_model(path: Path, padding_megabytes: int = 0, seed: int = 0) -> Path:
    """x: float32[batch, 4] -> scores: float32[batch, 3].

    ``padding_megabytes`` adds an unused random initializer so the file reaches a given size
    (used to measure image builds with a realistically large model).
    """
    initializers = [numpy_helper.from_array(WEIGHT, "weight"), numpy_helper.from_array(BIAS, "bias")]
    if padding_megabytes:
        rng = np.random.default_rng(seed)
        padding = rng.standard_normal(padding_megabytes * 1024 * 1024 // 4, dtype=np.float32)
        initializers.append(numpy_helper.from_array(padding, "padding"))
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["scores"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        initializers,
    )
    return _save(graph, path)


def two_input_model(path: Path) -> Path:
    """a: float32[batch, 2], b: int64[batch, 2] -> total: float32[batch, 2] = a + b."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["total"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 2]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 2])],
    )
    return _save(graph, path)
