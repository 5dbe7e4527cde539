"""Skip the trailing padding of sequence models inside the graph.

Inputs padded to a fixed length (e.g. 128 tokens) mostly hold padding. For a model whose
output has no sequence axis (a pooled embedding) and which masks padded keys, the positions
after the last real token of every row change nothing: the graph can slice them off first.
The rewrite adds, before everything else:

    last = max over rows and positions of mask * (position + 1)      # right padding assumed
    x = x[:, :last] for every sequence input

With left padding ``last`` is the full length and nothing is skipped, so the result is always
the same as the untrimmed model's. Conversion checks parity against torch on padded inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_P = "trim_padding:"  # internal tensors; trimmed inputs are named "trimmed:<input>"


def trim_trailing_padding(model: onnx.ModelProto, mask: str, sequence_inputs: list[str]) -> None:
    """Rewrite ``model`` in place so ``sequence_inputs`` (including ``mask``) lose trailing padding."""
    names = {i.name for i in model.graph.input}
    missing = [n for n in [mask, *sequence_inputs] if n not in names]
    if missing:
        raise ValueError(f"cannot trim padding: the model has no input {', '.join(missing)}")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        raise ValueError("trimming padding needs opset 13 or later")
    renamed = {name: "trimmed:" + name for name in sequence_inputs}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], np.int64), _P + "zero"),
            numpy_helper.from_array(np.array([1], np.int64), _P + "axis1"),
            numpy_helper.from_array(np.array(1, np.int64), _P + "one"),
        ]
    )
    nodes = [
        helper.make_node("Cast", [mask], [_P + "mask"], to=TensorProto.INT64),
        helper.make_node("Shape", [_P + "mask"], [_P + "shape"]),
        helper.make_node("Gather", [_P + "shape", _P + "one"], [_P + "length"], axis=0),
        helper.make_node("Add", [_P + "length", _P + "one"], [_P + "end"]),
        helper.make_node("Range", [_P + "one", _P + "end", _P + "one"], [_P + "positions"]),
        helper.make_node("Mul", [_P + "mask", _P + "positions"], [_P + "used"]),
        helper.make_node("ReduceMax", [_P + "used"], [_P + "last_used"], keepdims=0),
        helper.make_node("Max", [_P + "last_used", _P + "one"], [_P + "last"]),  # keep one position
        helper.make_node("Reshape", [_P + "last", _P + "axis1"], [_P + "stop"]),
    ]
    for name, trimmed in renamed.items():
        nodes.append(helper.make_node("Slice", [name, _P + "zero", _P + "stop", _P + "axis1"], [trimmed], name=trimmed))
    for offset, node in enumerate(nodes):
        if not node.name:
            node.name = node.output[0]
        model.graph.node.insert(offset, node)
