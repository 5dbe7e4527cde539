from __future__ import annotations

import pytest
import torch

from tests.workers.ml.conftest import TINY_BERT_CONFIG
from workers.ml.architectures import ArchitectureError, build_module, get_architecture


def test_mlp_layers_and_strict_weights() -> None:
    module = build_module("mlp", {"layers": [4, 3, 2]})
    assert [type(m).__name__ for m in module] == ["Linear", "ReLU", "Linear"]
    weights = {k: torch.ones_like(v) for k, v in module.state_dict().items()}
    loaded = build_module("mlp", {"layers": [4, 3, 2]}, weights)
    assert loaded(torch.ones(1, 4)).tolist() == [[16.0, 16.0]]  # relu(4 + 1) * 3 + 1
    assert not loaded.training


@pytest.mark.parametrize("config", [{}, {"layers": [4]}, {"layers": [4, 0]}, {"layers": "4,2"}])
def test_mlp_rejects_bad_configs(config: dict) -> None:
    with pytest.raises(ArchitectureError, match="needs 'layers'"):
        build_module("mlp", config)


def test_weights_must_fit_exactly() -> None:
    weights = dict(build_module("mlp", {"layers": [4, 3, 2]}).state_dict())
    weights["extra.weight"] = torch.zeros(1)
    del weights["0.bias"]
    weights["2.weight"] = torch.zeros(5, 5)
    with pytest.raises(ArchitectureError, match=r"missing: 0.bias; unexpected: extra.weight; wrong shape: 2.weight"):
        build_module("mlp", {"layers": [4, 3, 2]}, weights)


def test_bert_weights_accept_prefixes_and_ignore_unused_tensors() -> None:
    torch.manual_seed(0)
    source = build_module("bert-embedding", TINY_BERT_CONFIG)
    weights = {"bert." + k: v for k, v in source.bert.state_dict().items()}
    weights["bert.embeddings.position_ids"] = torch.arange(64)
    weights["pooler.dense.weight"] = torch.zeros(32, 32)
    copy = build_module("bert-embedding", TINY_BERT_CONFIG, weights)
    ids = torch.tensor([[5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = copy(ids, mask)
    assert torch.allclose(out, source(ids, mask))
    assert torch.allclose(out.norm(dim=1), torch.ones(1))


def test_unknown_names_and_incomplete_configs() -> None:
    with pytest.raises(ArchitectureError, match="unknown architecture 'resnet'; registered: bert-embedding, mlp"):
        get_architecture("resnet")
    with pytest.raises(ArchitectureError, match="lacks num_attention_heads, num_hidden_layers, vocab_size"):
        build_module("bert-embedding", {"hidden_size": 8})
