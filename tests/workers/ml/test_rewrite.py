from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.workers.ml.conftest import TinyBert, padded_batch
from tests.workers.ml.onnx_builders import mlp_graph, save_model
from workers.ml.candidates import graph, rewrite, simulate
from workers.ml.metrics import rowwise_cosine
from workers.ml.runtime import make_session

RNG = np.random.default_rng(0)
W = RNG.normal(size=(16, 8)).astype(np.float32)
X = RNG.normal(size=(5, 16)).astype(np.float32) * np.linspace(0.1, 8, 16, dtype=np.float32)


def one_layer(tmp_path: Path) -> tuple[onnx.ModelProto, graph.Layer]:
    model = onnx.load(str(save_model(mlp_graph([W], [np.zeros(8)]), tmp_path / "m.onnx")))
    graph.name_nodes(model)
    return model, graph.find_layers(model)[0]


def run(model: onnx.ModelProto, tmp_path: Path) -> np.ndarray:
    return make_session(graph.save(model, tmp_path / "out.onnx")).run(None, {"x": X})[0]


def test_smoothing_keeps_the_fp32_result(tmp_path: Path) -> None:
    model, layer = one_layer(tmp_path)
    rewrite.smooth(model, layer, simulate.smoothing_scales(X, W, 0.5))
    np.testing.assert_allclose(run(model, tmp_path), X @ W, rtol=1e-5, atol=1e-5)


def test_int8_weights_with_fp32_arithmetic(tmp_path: Path) -> None:
    model, layer = one_layer(tmp_path)
    rewrite.store_weights_int8(model, layer)
    assert graph.initializers(model)[f"{layer.name}/weight_int8"].data_type == TensorProto.INT8
    assert W.dtype == np.float32 and "w0" not in graph.initializers(model)
    exact = X @ W
    assert np.linalg.norm(run(model, tmp_path) - exact) / np.linalg.norm(exact) < 0.01


def test_gemm_becomes_matmul(tmp_path: Path) -> None:
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    g = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(W.T.copy(), "w"), numpy_helper.from_array(np.ones(8, np.float32), "b")],
    )
    model = onnx.load(str(save_model(g, tmp_path / "g.onnx")))
    graph.name_nodes(model)
    assert graph.gemm_to_matmul(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    np.testing.assert_allclose(run(model, tmp_path), X @ W + 1, rtol=1e-5, atol=1e-5)


def test_embedding_rows_replace_the_fused_op(tiny_bert: TinyBert, tiny_bert_onnx: Path, tmp_path: Path) -> None:
    model = graph.load(tiny_bert_onnx)
    graph.name_nodes(model)
    layer = next(layer for layer in graph.find_layers(model) if layer.kind == "embedding")
    rewrite.quantize_embedding_rows(model, layer)
    assert "EmbedLayerNormalization" not in {n.op_type for n in model.graph.node}
    inputs = padded_batch([4, 9, 2], 32, seed=3)
    got = make_session(graph.save(model, tmp_path / "e.onnx")).run(None, inputs)[0]
    reference = make_session(tiny_bert_onnx).run(None, inputs)[0]
    assert rowwise_cosine(got, reference).min() > 0.9999
