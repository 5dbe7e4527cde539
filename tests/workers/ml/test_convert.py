from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.workers.ml.conftest import Digits, TinyBert, padded_batch
from workers.ml.architectures import build_module
from workers.ml.convert import ConversionError, convert_to_onnx
from workers.ml.evalset import EvalSet
from workers.ml.runtime import make_session


def test_onnx_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"anything")
    result = convert_to_onnx(path, tmp_path / "out", EvalSet({"": np.ones((1, 2))}))
    assert (result.path, result.source_format, result.parity_max_abs_diff) == (path, "onnx", None)


def test_safetensors_mlp_is_exported_checked_and_optimised(digits: Digits, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = build_module("mlp", {"layers": [64, 16, 10]})
    save_file(module.state_dict(), str(tmp_path / "w.safetensors"))
    steps: list[float] = []
    result = convert_to_onnx(
        tmp_path / "w.safetensors",
        tmp_path / "out",
        EvalSet({"x": digits.x_test}),
        architecture="mlp",
        config={"layers": [64, 16, 10]},
        progress=lambda p, s: steps.append(p),
    )
    assert result.source_format == "safetensors"
    assert result.recipe["exporter"] == "dynamo" and result.recipe["optimizer"] == "onnxruntime-basic"
    assert result.parity_max_abs_diff is not None and result.parity_max_abs_diff < 1e-5
    assert steps == sorted(steps) and steps[-1] == 100
    got = make_session(result.path).run(None, {"x": digits.x_test})[0]
    np.testing.assert_allclose(got, module(torch.from_numpy(digits.x_test)).detach().numpy(), atol=1e-5)


def test_torch_export_archive(digits: Digits, tmp_path: Path) -> None:
    module = build_module("mlp", {"layers": [64, 8, 10]})
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (torch.zeros(4, 64),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    result = convert_to_onnx(tmp_path / "m.pt2", tmp_path / "out", EvalSet({"": digits.x_test}))
    assert result.source_format == "torch-export"
    assert [i.name for i in onnx.load(str(result.path)).graph.input] == ["input"]
    assert result.parity_max_abs_diff < 1e-5


def test_static_batch_archives_are_explained(tmp_path: Path) -> None:
    program = torch.export.export(build_module("mlp", {"layers": [3, 2]}), (torch.zeros(2, 3),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    with pytest.raises(ConversionError, match="export it with a dynamic batch dimension"):
        convert_to_onnx(tmp_path / "m.pt2", tmp_path / "out", EvalSet({"": np.zeros((9, 3), np.float32)}))


def test_bert_is_fused_and_skips_padding_exactly(tiny_bert: TinyBert, tiny_bert_onnx: Path) -> None:
    ops = collections.Counter(n.op_type for n in onnx.load(str(tiny_bert_onnx)).graph.node)
    assert (ops["EmbedLayerNormalization"], ops["Attention"], ops["SkipLayerNormalization"]) == (1, 2, 4)
    module = build_module("bert-embedding", tiny_bert.config)
    module.bert.load_state_dict(load_file(str(tiny_bert.weights)))
    inputs = padded_batch([3, 7], 32, seed=5)
    expected = module(*(torch.from_numpy(inputs[k]) for k in inputs)).detach().numpy()
    session = make_session(tiny_bert_onnx)
    np.testing.assert_allclose(session.run(None, inputs)[0], expected, atol=1e-5)
    for name in inputs:  # the same rows without the padding give the same embeddings
        inputs[name] = inputs[name][:, :7]
    np.testing.assert_allclose(session.run(None, inputs)[0], expected, atol=1e-5)


def test_errors_name_the_problem(tmp_path: Path, tiny_bert: TinyBert) -> None:
    data = EvalSet({"": np.zeros((2, 3), np.float32)})
    with pytest.raises(ConversionError, match=r"unsupported model format '\.pkl'"):
        convert_to_onnx(tmp_path / "m.pkl", tmp_path, data)
    save_file({"w": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConversionError, match="need an architecture name"):
        convert_to_onnx(tmp_path / "w.safetensors", tmp_path, data)
    with pytest.raises(ConversionError, match="must give the inputs input_ids, attention_mask"):
        convert_to_onnx(tiny_bert.weights, tmp_path, data, architecture="bert-embedding", config=tiny_bert.config)
