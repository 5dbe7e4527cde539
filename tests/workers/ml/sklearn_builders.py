"""Real scikit-learn / LightGBM / XGBoost classifiers converted to ONNX-ML, on scikit-learn's bundled data.

Each builder returns the ONNX bytes and the held-out data with the accuracy scikit-learn itself
measures on it, so a test can check Slipway's figure against the framework's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Converted:
    onnx_bytes: bytes
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float  # what the framework's own predict() scores on x_test


@cache
def split(name: str = "breast_cancer") -> tuple[np.ndarray, ...]:
    loader = {"breast_cancer": load_breast_cancer, "wine": load_wine}[name]
    x, y = loader(return_X_y=True)
    return tuple(train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0, stratify=y))


def _converted(model: object, dataset: str = "breast_cancer", batch: int | None = None, **options: object) -> Converted:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x_train, x_test, y_train, y_test = split(dataset)
    model.fit(x_train, y_train)  # type: ignore[attr-defined]
    onx = convert_sklearn(model, initial_types=[("X", FloatTensorType([batch, x_train.shape[1]]))],
                          target_opset={"": 17, "ai.onnx.ml": 3}, **options)
    accuracy = float(np.mean(model.predict(x_test) == y_test))  # type: ignore[attr-defined]
    return Converted(onx.SerializeToString(), x_test, y_test, accuracy)


@cache
def scaled_logistic_regression(batch: int | None = None) -> Converted:
    return _converted(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), batch=batch)


@cache
def scaled_mlp() -> Converted:
    """Both domains: an ai.onnx.ml Scaler and ZipMap around standard MatMul layers."""
    return _converted(make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=500, random_state=0)))


@cache
def random_forest() -> Converted:
    return _converted(RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0), "wine")


@cache
def gradient_boosting() -> Converted:
    return _converted(GradientBoostingClassifier(n_estimators=30, random_state=0))


@cache
def lightgbm_classifier() -> Converted:
    from lightgbm import LGBMClassifier
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x_train, x_test, y_train, y_test = split("wine")
    model = LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, random_state=0).fit(x_train, y_train)
    onx = convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, x_train.shape[1]]))], target_opset=15)
    return Converted(onx.SerializeToString(), x_test, y_test, float(np.mean(model.predict(x_test) == y_test)))


@cache
def xgboost_classifier() -> Converted:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from xgboost import XGBClassifier

    x_train, x_test, y_train, y_test = split("breast_cancer")
    model = XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x_train, y_train)
    onx = convert_xgboost(model, initial_types=[("X", FloatTensorType([None, x_train.shape[1]]))], target_opset=15)
    return Converted(onx.SerializeToString(), x_test, y_test, float(np.mean(model.predict(x_test) == y_test)))


def ml_only_classifier(batch: int = 3, classes: list[int] | None = None, string_classes: bool = False) -> bytes:
    """A two-feature linear classifier made of ai.onnx.ml operators only (no standard opset), with a
    fixed batch, a label output and a ZipMap of probabilities: the shape skl2onnx gives a bare
    LogisticRegression."""
    labels = classes or [0, 1, 2]
    coefficients = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], np.float32)[: len(labels)]
    label_attr = {"classlabels_strings": [str(c) for c in labels]} if string_classes else {"classlabels_ints": labels}
    map_attr = {"classlabels_strings": [str(c) for c in labels]} if string_classes else {"classlabels_int64s": labels}
    nodes = [
        helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml",
                         coefficients=coefficients.ravel().tolist(), intercepts=[0.0] * len(labels),
                         post_transform="SOFTMAX", **label_attr),
        helper.make_node("ZipMap", ["scores"], ["probabilities"], domain="ai.onnx.ml", **map_attr),
    ]
    key = TensorProto.STRING if string_classes else TensorProto.INT64
    graph = helper.make_graph(
        nodes, "ml_only", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 2])],
        [helper.make_tensor_value_info("label", key, [batch]),
         helper.make_value_info("probabilities", helper.make_sequence_type_proto(
             helper.make_map_type_proto(key, helper.make_tensor_type_proto(TensorProto.FLOAT, []))))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
