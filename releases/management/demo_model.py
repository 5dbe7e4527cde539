"""The demo model: logistic regression on scikit-learn's bundled digits, as ONNX, with its evaluation data.

Real data, trained in a second, no download: used by `manage.py demo` and by the tests."""

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class DigitsModel:
    onnx_bytes: bytes
    eval_inputs: np.ndarray
    eval_labels: np.ndarray
    expected_accuracy: float  # the graph's own arithmetic (float32) on the evaluation rows


@cache
def digits_model() -> DigitsModel:
    """Logistic regression on digits, written as an ONNX graph (MatMul, Add, Softmax)."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    clf = LogisticRegression(max_iter=300).fit(x[:1400], y[:1400])
    weights = clf.coef_.T.astype(np.float32)
    bias = clf.intercept_.astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["pixels", "W"], ["logits0"]),
         helper.make_node("Add", ["logits0", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "digits",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    ex, ey = x[1400:], y[1400:]
    expected = float(((ex @ weights + bias).argmax(axis=1) == ey).mean())
    return DigitsModel(model.SerializeToString(), ex, ey, expected)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """numpy.savez into memory; keys may hold ':' (input:<name>)."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=True, **arrays)  # as numpy writes; readers here refuse object arrays
    return buffer.getvalue()


def digits_eval_npz() -> bytes:
    """The held-out digits rows and their labels, as CI would post them."""
    m = digits_model()
    return npz_bytes(inputs=m.eval_inputs, labels=m.eval_labels)
