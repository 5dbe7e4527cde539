from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from tests.workers.ml.onnx_builders import mlp_graph, save_model


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
