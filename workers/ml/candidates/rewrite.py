"""Graph rewrites for accuracy-aware int8: activation smoothing, int8 embedding rows, int8-stored weights."""

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
        position,
        helper.make_node("Mul", [layer.activation, divisor], [smoothed], name=f"{layer.name}/smooth"),
    )


def _node(model: onnx.ModelProto, name: str) -> tuple[int, onnx.NodeProto]:
    for position, node in enumerate(model.graph.node):
        if node.name == name:
            return position, node
    raise KeyError(name)


def quantize_embedding_rows(model: onnx.ModelProto, layer: Layer) -> None:
    """Replace a fused EmbedLayerNormalization by plain ops over an int8 word table.

    The word embedding table (usually the largest tensor of a BERT model) is stored as int8
    with one scale per row (token), gathered and rescaled per looked-up token; position and
    segment embeddings are added and LayerNormalization applied, as the fused op did. The
    attention mask index it produced (real tokens per sequence) is computed from the mask.
    """
    position, node = _node(model, layer.name)
    ids, segments, _word, positions, segment_table, gamma, beta = (list(node.input) + [""] * 9)[:7]
    mask = node.input[7] if len(node.input) > 7 else ""
    if len(node.input) > 8 and node.input[8]:
        raise ValueError(f"{layer.name}: explicit position ids are not supported")
    if len(node.output) > 2 and node.output[2]:
        raise ValueError(f"{layer.name}: the embedding sum output is not supported")
    epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
    table = weight_matrix(model, layer)
    scale = np.abs(table).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    values = np.clip(np.round(table / scale), -127, 127).astype(np.int8)
    p = layer.name
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(values, f"{p}/word_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{p}/word_scale"),
            numpy_helper.from_array(np.array(1, np.int64), f"{p}/one"),
            numpy_helper.from_array(np.array(0, np.int64), f"{p}/zero"),
        ]
    )
    nodes = [
        helper.make_node("Gather", [f"{p}/word_int8", ids], [f"{p}/wq"], name=f"{p}/wq"),
        helper.make_node("Cast", [f"{p}/wq"], [f"{p}/wf"], name=f"{p}/wf", to=TensorProto.FLOAT),
        helper.make_node("Gather", [f"{p}/word_scale", ids], [f"{p}/ws"], name=f"{p}/ws"),
        helper.make_node("Mul", [f"{p}/wf", f"{p}/ws"], [f"{p}/words"], name=f"{p}/words"),
        helper.make_node("Shape", [ids], [f"{p}/shape"], name=f"{p}/shape"),
        helper.make_node("Gather", [f"{p}/shape", f"{p}/one"], [f"{p}/length"], name=f"{p}/length", axis=0),
        helper.make_node("Range", [f"{p}/zero", f"{p}/length", f"{p}/one"], [f"{p}/pos_ids"], name=f"{p}/pos_ids"),
        helper.make_node("Gather", [positions, f"{p}/pos_ids"], [f"{p}/pos"], name=f"{p}/pos"),
        helper.make_node("Add", [f"{p}/words", f"{p}/pos"], [f"{p}/sum"], name=f"{p}/sum"),
    ]
    total = f"{p}/sum"
    if segments and segment_table:
        nodes += [
            helper.make_node("Gather", [segment_table, segments], [f"{p}/seg"], name=f"{p}/seg"),
            helper.make_node("Add", [total, f"{p}/seg"], [f"{p}/sum2"], name=f"{p}/sum2"),
        ]
        total = f"{p}/sum2"
    nodes.append(
        helper.make_node(
            "LayerNormalization",
            [total, gamma, beta],
            [node.output[0]],
            name=f"{p}/norm",
            axis=-1,
            epsilon=epsilon,
        )
    )
    if len(node.output) > 1 and node.output[1]:
        if not mask:
            raise ValueError(f"{layer.name}: a mask index is produced but no attention mask is given")
        nodes += [
            helper.make_node("Cast", [mask], [f"{p}/mask32"], name=f"{p}/mask32", to=TensorProto.INT32),
            _reduce_sum_axis1(model, f"{p}/mask32", node.output[1], f"{p}/one_axis"),
        ]
    model.graph.node.remove(node)
    for offset, new in enumerate(nodes):
        model.graph.node.insert(position + offset, new)
    drop_unused_initializers(model)


def _reduce_sum_axis1(model: onnx.ModelProto, source: str, target: str, axes_name: str) -> onnx.NodeProto:
    if opset(model) >= 13:
        model.graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), axes_name))
        return helper.make_node("ReduceSum", [source, axes_name], [target], name=target, keepdims=0)
    return helper.make_node("ReduceSum", [source], [target], name=target, axes=[1], keepdims=0)


def store_weights_int8(model: onnx.ModelProto, layer: Layer) -> None:
    """Keep the layer's arithmetic and activations in fp32 but store its weight as int8.

    The weight becomes symmetric int8 per output channel, restored by ``Cast`` and ``Mul``:
    4x smaller on disk with only weight rounding error. Both inputs are constants, so ONNX
    Runtime folds them into an fp32 weight when the session starts and runs an ordinary fp32
    MatMul (a ``DequantizeLinear`` would instead be fused into an int8 kernel).
    """
    values, scale = quantize_weight(weight_matrix(model, layer))
    p = layer.name
    model.graph.initializer.remove(initializers(model)[layer.weight])
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(values, f"{p}/weight_int8"),
            numpy_helper.from_array(scale.reshape(1, -1), f"{p}/weight_scale"),
        ]
    )
    position, _ = _node(model, layer.name)
    restore = [
        helper.make_node(
            "Cast", [f"{p}/weight_int8"], [f"{p}/weight_float"], name=f"{p}/weight_float", to=TensorProto.FLOAT
        ),
        helper.make_node("Mul", [f"{p}/weight_float", f"{p}/weight_scale"], [layer.weight], name=f"{p}/weight"),
    ]
    for offset, node in enumerate(restore):
        model.graph.node.insert(position + offset, node)
