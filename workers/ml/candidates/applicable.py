"""Which compression techniques can act on a model at all, and why not.

Pruning and int8 act on constant weight matrices (MatMul, Gemm, Conv, fused attention); fp16
converts float weights. Tree ensembles and linear classifiers converted from scikit-learn,
LightGBM or XGBoost keep their parameters as attributes of ai.onnx.ml operators, which none of
these techniques touch: building such a candidate would only copy the model (or fail).
"""

from __future__ import annotations

from collections import Counter

import onnx

WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "Attention", "EmbedLayerNormalization"}
QUANTIZING = {"pruned", "int8-dynamic", "int8-static", "int8-mixed"}
MIN_WEIGHT_VALUES = 16  # smaller float initializers are constants (shapes, scales), not weights


def not_applicable_reason(kind: str, model: onnx.ModelProto) -> str | None:
    """Why technique ``kind`` cannot apply to ``model``, or None when it can."""
    if kind not in QUANTIZING and kind != "fp16":
        return None
    weights = {t.name for t in model.graph.initializer if len(t.dims) >= 2}
    layers = [n for n in model.graph.node if n.op_type in WEIGHT_OPS and n.domain in ("", "com.microsoft")
              and len(n.input) > 1 and n.input[1] in weights]
    floats = [t for t in model.graph.initializer
              if t.data_type == onnx.TensorProto.FLOAT and _values(t) >= MIN_WEIGHT_VALUES]
    ml_ops = Counter(n.op_type for n in model.graph.node if n.domain == "ai.onnx.ml")
    held = f"; its parameters live in ai.onnx.ml operators ({', '.join(sorted(ml_ops))})" if ml_ops else ""
    if kind in QUANTIZING and not layers:
        return f"the model has no MatMul, Gemm, Conv or attention layer with constant weights to {_verb(kind)}{held}"
    if kind == "fp16" and not floats:
        return f"the model has no float32 weights to convert to float16{held}"
    return None


def _values(tensor: onnx.TensorProto) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def _verb(kind: str) -> str:
    return "prune" if kind == "pruned" else "quantize"
