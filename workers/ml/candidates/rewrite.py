"""Graph rewrites for accuracy-aware int8: activation smoothing and per-token quantization."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workers.ml.candidates.graph import (
    Layer,
    drop_unused_initializers,
    initializers,
    opset,
    set_weight_matrix,
    weight_matrix,
)
from workers.ml.candidates.simulate import quantize_weight

_SHARED = "per_token_"


def smooth(model: onnx.ModelProto, layer: Layer, scales: np.ndarray) -> None:
    """Divide the layer's activation by ``scales`` per channel and fold them into its weight.

    A ``Mul`` is inserted on this layer's input only, so other consumers (residual branches)
    see the original tensor; the product is unchanged in exact arithmetic.
    """
    set_weight_matrix(model, layer, weight_matrix(model, layer) * scales[:, None])
    divisor = f"{layer.name}/smooth_inverse"
    smoothed = f"{layer.name}/smoothed_input"
    model.graph.initializer.append(numpy_helper.from_array((1.0 / scales).astype(np.float32), divisor))
    position, node = _node(model, layer.name)
    node.input[0] = smoothed
    model.graph.node.insert(
        position, helper.make_node("Mul", [layer.activation, divisor], [smoothed], name=f"{layer.name}/smooth")
    )


def quantize_per_token(model: onnx.ModelProto, layer: Layer) -> None:
    """Replace a MatMul by int8 arithmetic with one activation scale per row (token).

    x (…, K) -> s = max|x| / 127 per row -> q = round(x / s) + 128 as uint8 ->
    MatMulInteger(q, W_int8, 128) -> float * s * w_scale. Weights are symmetric int8 per output
    channel; the fp32 weight is dropped from the graph.
    """
    _add_shared_constants(model)
    position, node = _node(model, layer.name)
    values, w_scale = quantize_weight(weight_matrix(model, layer))
    p = layer.name
    model.graph.initializer.extend(
        [numpy_helper.from_array(values, f"{p}/w_int8"), numpy_helper.from_array(w_scale, f"{p}/w_scale")]
    )
    x = node.input[0]
    output = node.output[0]
    nodes = [
        helper.make_node("Abs", [x], [f"{p}/abs"], name=f"{p}/abs"),
        _reduce_max_last_axis(model, f"{p}/abs", f"{p}/amax"),
        helper.make_node("Mul", [f"{p}/amax", _SHARED + "inv127"], [f"{p}/s0"], name=f"{p}/s0"),
        helper.make_node("Max", [f"{p}/s0", _SHARED + "eps"], [f"{p}/s"], name=f"{p}/s"),
        helper.make_node("Div", [x, f"{p}/s"], [f"{p}/xs"], name=f"{p}/xs"),
        helper.make_node("Round", [f"{p}/xs"], [f"{p}/xr"], name=f"{p}/xr"),
        helper.make_node("Add", [f"{p}/xr", _SHARED + "offset"], [f"{p}/xu"], name=f"{p}/xu"),
        helper.make_node("Cast", [f"{p}/xu"], [f"{p}/q"], name=f"{p}/q", to=TensorProto.UINT8),
        helper.make_node(
            "MatMulInteger", [f"{p}/q", f"{p}/w_int8", _SHARED + "zero"], [f"{p}/acc"], name=f"{p}/mmi"
        ),
        helper.make_node("Cast", [f"{p}/acc"], [f"{p}/accf"], name=f"{p}/accf", to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{p}/accf", f"{p}/s"], [f"{p}/rows"], name=f"{p}/rows"),
        helper.make_node("Mul", [f"{p}/rows", f"{p}/w_scale"], [output], name=f"{p}/cols"),
    ]
    model.graph.node.remove(node)
    for offset, new in enumerate(nodes):
        model.graph.node.insert(position + offset, new)
    drop_unused_initializers(model)


def _add_shared_constants(model: onnx.ModelProto) -> None:
    if _SHARED + "zero" in initializers(model):
        return
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1 / 127], np.float32), _SHARED + "inv127"),
            numpy_helper.from_array(np.array([1e-12], np.float32), _SHARED + "eps"),
            numpy_helper.from_array(np.array(128, np.float32), _SHARED + "offset"),
            numpy_helper.from_array(np.array(128, np.uint8), _SHARED + "zero"),
            numpy_helper.from_array(np.array([-1], np.int64), _SHARED + "last_axis"),
        ]
    )


def _node(model: onnx.ModelProto, name: str) -> tuple[int, onnx.NodeProto]:
    for position, node in enumerate(model.graph.node):
        if node.name == name:
            return position, node
    raise KeyError(name)


def _reduce_max_last_axis(model: onnx.ModelProto, source: str, target: str) -> onnx.NodeProto:
    if opset(model) >= 18:  # axes became an input
        return helper.make_node("ReduceMax", [source, _SHARED + "last_axis"], [target], name=target, keepdims=1)
    return helper.make_node("ReduceMax", [source], [target], name=target, axes=[-1], keepdims=1)
