"""ONNX graph plumbing shared by the compression techniques."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from workers.ml.evalset import EvalSet
from workers.ml.runtime import ORT_TO_NUMPY
from workers.ml.validate import fixed_batch_size, match_inputs, specs_of

_PROTOBUF_LIMIT = 2**31 - 2**26  # leave headroom under protobuf's 2 GiB


@dataclass(frozen=True)
class Layer:
    """A node with a constant weight matrix that quantization can act on.

    ``kind`` is "matmul" (MatMul with a constant weight: the per-token and smoothing rewrites
    apply; run :func:`gemm_to_matmul` first so Gemm layers count),
    "attention" (ONNX Runtime's fused Attention: quantized whole by quantize_dynamic) or
    "embedding" (fused EmbedLayerNormalization: quantized whole, no activation input).
    """

    name: str
    kind: str
    activation: str  # the input tensor multiplied by the weight ("" for embeddings)
    weight: str  # initializer name


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model``, moving weights to ``<name>.data`` beside it only past protobuf's limit."""
    external = model.ByteSize() > _PROTOBUF_LIMIT
    onnx.save(model, str(path), save_as_external_data=external, location=path.name + ".data")
    return path


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {tensor.name: tensor for tensor in model.graph.initializer}


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Quantizable layers in graph order (call :func:`name_nodes` first: names key the choices)."""
    weights = {n: t for n, t in initializers(model).items() if len(t.dims) == 2}
    layers = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            layers.append(Layer(node.name, "matmul", node.input[0], node.input[1]))
        elif node.op_type == "Attention" and node.input[1] in weights:
            layers.append(Layer(node.name, "attention", node.input[0], node.input[1]))
        elif node.op_type == "EmbedLayerNormalization" and node.input[2] in weights:
            layers.append(Layer(node.name, "embedding", "", node.input[2]))
    return layers


def weight_matrix(model: onnx.ModelProto, layer: Layer) -> np.ndarray:
    """The layer's weight as (input channels, output channels)."""
    return numpy_helper.to_array(initializers(model)[layer.weight])


def set_weight_matrix(model: onnx.ModelProto, layer: Layer, matrix: np.ndarray) -> None:
    tensor = initializers(model)[layer.weight]
    tensor.CopyFrom(numpy_helper.from_array(matrix.astype(np.float32), layer.weight))


def use_count(model: onnx.ModelProto, tensor: str) -> int:
    return sum(list(node.input).count(tensor) for node in model.graph.node)


def opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite plain Gemm nodes with a constant weight as MatMul (+ Add); return how many.

    ONNX Runtime's dynamic quantization handles MatMul but not Gemm, and exporters and the
    basic graph optimisations turn every ``nn.Linear`` into a Gemm.
    """
    weights = initializers(model)
    rewritten = 0
    for node in list(model.graph.node):
        if node.op_type != "Gemm" or node.input[1] not in weights or not _plain_gemm(node):
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if any(a.name == "transB" and a.i for a in node.attribute):
            name = node.input[1] + "_transposed"
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), name))
        else:
            name = node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        product = node.output[0] + "_matmul" if bias else node.output[0]
        replacement = [helper.make_node("MatMul", [node.input[0], name], [product], name=node.name)]
        if bias:
            replacement.append(helper.make_node("Add", [product, bias], [node.output[0]], name=node.name + "_bias"))
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for offset, new in enumerate(replacement):
            model.graph.node.insert(index + offset, new)
        rewritten += 1
    drop_unused_initializers(model)
    return rewritten


def declare_ml_types(model: onnx.ModelProto) -> None:
    """Declare the element type of every tensor ONNX's own type inference leaves untyped.

    ONNX infers no types through most ai.onnx.ml operators (a scikit-learn pipeline's Scaler,
    LinearClassifier, ...), so every tensor after one is untyped, and tools that go by types (the
    float16 converter inserts its casts only where it knows them) skip or break there. ONNX
    Runtime, which runs those operators, knows the types: they are read from a session that
    returns every untyped tensor. Only models with ai.onnx.ml operators are touched.
    """
    if not any(node.domain == "ai.onnx.ml" for node in model.graph.node):
        return
    graph = model.graph
    known = {v.name for v in (*graph.value_info, *graph.input, *graph.output)} | set(initializers(model))
    untyped = [name for node in graph.node for name in node.output if name and name not in known]
    if not untyped:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in untyped)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    graph.value_info.extend(
        helper.make_tensor_value_info(out.name, helper.np_dtype_to_tensor_dtype(ORT_TO_NUMPY[out.type]), None)
        for out in session.get_outputs() if out.name in untyped and out.type in ORT_TO_NUMPY)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {output.name for output in model.graph.output}
    keep = [tensor for tensor in model.graph.initializer if tensor.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (node names key the per-layer choices)."""
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)


def calibration_feeds(
    model_path: Path, evalset: EvalSet, samples: int, batch: int = 16, *, whole_batches: bool = True
) -> list[dict[str, np.ndarray]]:
    """Up to ``samples`` evaluation samples as model feeds, in batches of ``batch`` (or the model's
    fixed batch size). With ``whole_batches`` a short last batch is left out (calibrators want
    batches of one size); without, every sample is fed, the last batch short as the evaluation's is."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    specs = specs_of(session.get_inputs())
    feeds = match_inputs(specs, evalset)
    fixed = fixed_batch_size(specs)
    step = fixed or batch
    count = min(samples, evalset.num_samples)
    if whole_batches or fixed:
        count = max(step, count // step * step)
    return [{name: array[start : min(start + step, count)] for name, array in feeds.items()}
            for start in range(0, count, step)]


def samples_in(feed: dict[str, np.ndarray]) -> int:
    return len(next(iter(feed.values())))


def run_outputs(model: onnx.ModelProto | Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The first output of ``model`` over all calibration batches."""
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def capture(
    model: onnx.ModelProto, tensors: list[str], feeds: list[dict[str, np.ndarray]], max_rows: int
) -> dict[str, np.ndarray]:
    """Values of intermediate ``tensors`` as (rows, channels), at most ``max_rows`` rows each."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in tensors)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    rows: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
    for feed in feeds:
        for name, value in zip(tensors, session.run(tensors, feed), strict=True):
            rows[name].append(value.reshape(-1, value.shape[-1]))
    captured = {}
    rng = np.random.default_rng(0)
    for name, parts in rows.items():
        stacked = np.concatenate(parts)
        if len(stacked) > max_rows:
            stacked = stacked[np.sort(rng.choice(len(stacked), max_rows, replace=False))]
        captured[name] = stacked.astype(np.float64)
    return captured


def _plain_gemm(node: onnx.NodeProto) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
