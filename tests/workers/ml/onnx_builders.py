"""Tiny ONNX models written node by node, so tests know their exact outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save_model(graph: onnx.GraphProto, path: Path, opset: int = OPSET) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def mlp_graph(
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    *,
    input_name: str = "x",
    batch: int | str = "batch",
    input_type: int = TensorProto.FLOAT,
) -> onnx.GraphProto:
    """x -> (MatMul, Add, Relu)* -> MatMul, Add -> "y" (raw scores, no softmax)."""
    nodes, initializers = [], []
    current = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [current], ["x_float"], to=TensorProto.FLOAT))
        current = "x_float"
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        initializers += [
            numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{i}"),
        ]
        last = i == len(weights) - 1
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], ["y" if last else f"pre{i}"]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [f"pre{i}"], [f"h{i}"]))
            current = f"h{i}"
    inputs = [helper.make_tensor_value_info(input_name, input_type, [batch, weights[0].shape[0]])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, weights[-1].shape[1]])]
    return helper.make_graph(nodes, "mlp", inputs, outputs, initializers)


def mlp_forward(x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray]) -> np.ndarray:
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w.astype(np.float32) + b.astype(np.float32)
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    return h


def log_model(path: Path) -> Path:
    """y = log(x) on [batch, 2]: gives -inf or NaN for inputs at or below zero."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    return save_model(graph, path)
