"""Pruning: remove whole hidden units where the graph allows it, else zero the smallest weights.

Structured (real speed and size): in a chain MatMul(W1) [+ Add(b1)] -> Relu -> MatMul(W2), a
hidden unit j is column j of W1, entry j of b1 and row j of W2; deleting it shrinks both
matrices. Units are ranked globally by ||W1[:, j]||_1 * ||W2[j, :]||_1 (how much signal flows
through them) relative to their layer's median, and the lowest ``prune_sparsity`` share is
removed (at least one unit stays per layer).

Unstructured (no chain found): the smallest ``prune_sparsity`` share of all MatMul weights by
magnitude (global L1) is set to zero. Dense kernels do not run faster on zeros and ONNX stores
them densely, so this only helps later compression; the recipe says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from workers.ml.candidates import graph
from workers.ml.candidates.quantize import prepared
from workers.ml.policy import BuildContext


@dataclass(frozen=True)
class _Chain:
    first: str  # W1 initializer (in, hidden)
    bias: str | None  # b1 initializer (hidden,)
    second: str  # W2 initializer (hidden, out)


def pruned(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    model = prepared(source)
    chains = find_chains(model)
    ctx.progress(20, "ranking weights")
    if chains:
        removed = remove_hidden_units(model, chains, ctx.policy.prune_sparsity)
        recipe: dict[str, object] = {"method": "structured: whole hidden units", "hidden_units_removed": removed}
    else:
        zeroed = zero_smallest_weights(model, ctx.policy.prune_sparsity)
        recipe = {
            "method": "unstructured: global L1 magnitude",
            "weights_zeroed": zeroed,
            "note": "no speed or size gain with dense kernels",
        }
    graph.save(model, out)
    return {"sparsity": ctx.policy.prune_sparsity} | recipe


def find_chains(model: onnx.ModelProto) -> list[_Chain]:
    weights = {n: t for n, t in graph.initializers(model).items() if len(t.dims) in (1, 2)}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}

    def only(tensor: str, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(tensor, [])
        if tensor in outputs or len(users) != 1 or users[0].op_type != op_type:
            return None
        return users[0]

    chains = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        current, bias = node.output[0], None
        add = only(current, "Add")
        if add is not None:
            bias = next((i for i in add.input if i in weights and i != current), None)
            if bias is None or len(weights[bias].dims) != 1:
                continue
            current = add.output[0]
        relu = only(current, "Relu")
        follow = only(relu.output[0], "MatMul") if relu is not None else None
        if relu is None or follow is None or follow.input[0] != relu.output[0] or follow.input[1] not in weights:
            continue
        if graph.use_count(model, node.input[1]) > 1 or graph.use_count(model, follow.input[1]) > 1:
            continue
        chains.append(_Chain(node.input[1], bias, follow.input[1]))
    return chains


def remove_hidden_units(model: onnx.ModelProto, chains: list[_Chain], sparsity: float) -> dict[str, int]:
    tensors = graph.initializers(model)
    arrays = {name: numpy_helper.to_array(t) for name, t in tensors.items()}
    scores = []
    for chain in chains:
        flow = np.abs(arrays[chain.first]).sum(axis=0) * np.abs(arrays[chain.second]).sum(axis=1)
        scores.append(flow / max(float(np.median(flow)), 1e-12))
    threshold = np.quantile(np.concatenate(scores), sparsity)
    removed = {}
    for chain, score in zip(chains, scores, strict=True):
        keep = score > threshold
        if not keep.any():
            keep[np.argmax(score)] = True
        # A matrix between two chains loses rows for one and columns for the other: always cut
        # from its current value.
        arrays[chain.first] = arrays[chain.first][:, keep]
        arrays[chain.second] = arrays[chain.second][keep, :]
        changed = [chain.first, chain.second]
        if chain.bias:
            arrays[chain.bias] = arrays[chain.bias][keep]
            changed.append(chain.bias)
        for name in changed:
            tensors[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arrays[name]), name))
        removed[chain.first] = int((~keep).sum())
    _forget_shapes(model)
    return removed


def zero_smallest_weights(model: onnx.ModelProto, sparsity: float) -> int:
    layers = [layer for layer in graph.find_layers(model) if layer.kind in ("matmul", "attention")]
    if not layers:
        raise ValueError("the model has no MatMul or attention weights to prune")
    matrices = {layer.weight: graph.weight_matrix(model, layer) for layer in layers}
    magnitudes = np.concatenate([np.abs(m).ravel() for m in matrices.values()])
    threshold = np.quantile(magnitudes, sparsity)
    zeroed = 0
    for layer in layers:
        matrix = matrices[layer.weight]
        mask = np.abs(matrix) <= threshold
        zeroed += int(mask.sum())
        graph.set_weight_matrix(model, layer, np.where(mask, 0.0, matrix))
    return zeroed


def _forget_shapes(model: onnx.ModelProto) -> None:
    """Drop inferred intermediate shapes: hidden widths changed."""
    del model.graph.value_info[:]
