from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from tests.workers.ml.onnx_builders import mlp_graph, save_model
from workers.ml.architectures import build_module
from workers.ml.convert import convert_to_onnx
from workers.ml.evalset import EvalSet


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class TrainedMLP:
    path: Path
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    test_accuracy: float


@pytest.fixture(scope="session")
def digits() -> Digits:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target.astype(np.int64), test_size=0.25, random_state=0, stratify=data.target
    )
    return Digits(x_train, y_train, x_test, y_test)


@pytest.fixture(scope="session")
def digits_mlp(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> TrainedMLP:
    """A 64-128-10 MLP trained on digits by scikit-learn, written as ONNX by hand."""
    clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=0)
    clf.fit(digits.x_train, digits.y_train)
    weights = [w.astype(np.float32) for w in clf.coefs_]
    biases = [b.astype(np.float32) for b in clf.intercepts_]
    path = save_model(mlp_graph(weights, biases), tmp_path_factory.mktemp("digits") / "mlp.onnx")
    return TrainedMLP(path, weights, biases, float(clf.score(digits.x_test, digits.y_test)))


@dataclass(frozen=True)
class TinyBert:
    weights: Path
    config: dict
    evalset: EvalSet


TINY_BERT_CONFIG = {
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "vocab_size": 100,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


def padded_batch(lengths: list[int], width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids with right padding to ``width`` and the matching attention mask."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 100, length)
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> TinyBert:
    """A randomly initialised 2-layer BERT saved as safetensors, with padded inputs."""
    torch.manual_seed(0)
    module = build_module("bert-embedding", TINY_BERT_CONFIG)
    path = tmp_path_factory.mktemp("tiny_bert") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in module.bert.state_dict().items()}, str(path))
    lengths = [int(n) for n in np.random.default_rng(1).integers(3, 20, 48)]
    return TinyBert(path, dict(TINY_BERT_CONFIG), EvalSet(padded_batch(lengths, 32)))


@pytest.fixture(scope="session")
def tiny_bert_onnx(tiny_bert: TinyBert, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_bert_onnx")
    return convert_to_onnx(
        tiny_bert.weights, out, tiny_bert.evalset, architecture="bert-embedding", config=tiny_bert.config
    ).path
