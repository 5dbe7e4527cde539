"""Whole-model int8 (dynamic and static) and fp16 candidates, built with ONNX Runtime's tools."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

from workers.ml.candidates import graph
from workers.ml.policy import BuildContext

# quantize_dynamic fails on fused transformer graphs without a default type for contrib ops.
DYNAMIC_OPTIONS = {"DefaultTensorType": onnx.TensorProto.FLOAT}


class _AdviceOnce(logging.Filter):
    """Lets ONNX Runtime's advice to pre-process a model before quantizing it through once per process:
    the quantizers give it for every candidate of every release, and the pre-processing it asks for is
    done where it matters (static int8)."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "pre-processing before quantization" not in str(record.msg):
            return True
        said, type(self).said = type(self).said, True
        return not said


_ADVICE_ONCE = _AdviceOnce()


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantization tools log every tensor at INFO on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    root.addFilter(_ADVICE_ONCE)
    try:
        yield
    finally:
        root.removeFilter(_ADVICE_ONCE)
        root.setLevel(level)


def prepared(source: Path) -> onnx.ModelProto:
    """The model with every node named and Gemm layers as MatMul, ready for the quantizers."""
    model = graph.load(source)
    graph.name_nodes(model)
    graph.gemm_to_matmul(model)
    return model


def dynamic_int8(model: onnx.ModelProto, out: Path, nodes: list[str] | None = None) -> None:
    """Weights int8 per output channel, activations uint8 quantized at run time (per tensor).

    Signed weights use ONNX Runtime's fastest uint8 x int8 kernels, which can saturate on CPUs
    without VNNI; per-channel scales keep that rare, and the evaluation measures what is left.
    """
    with quiet_quantizer():
        quantize_dynamic(
            model,
            out,
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            extra_options=DYNAMIC_OPTIONS,
        )


def int8_dynamic(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    ctx.progress(10, "quantizing weights to int8")
    model = prepared(source)
    dynamic_int8(model, out)
    return {"weights": "int8 per channel", "activations": "uint8 per tensor, at run time"}


class _Batches(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def int8_static(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    """QDQ int8 with activation ranges calibrated (min/max) on the evaluation data."""
    policy = ctx.policy
    feeds = graph.calibration_feeds(source, ctx.evalset, policy.calibration_samples)
    with tempfile.TemporaryDirectory() as scratch:
        named = graph.save(prepared(source), Path(scratch) / "named.onnx")
        ready = Path(scratch) / "preprocessed.onnx"
        ctx.progress(10, "shape inference and pre-processing")
        with quiet_quantizer():
            symbolic = _pre_process(named, ready)
            ctx.progress(30, f"calibrating on {sum(graph.samples_in(f) for f in feeds)} samples")
            quantize_static(
                str(ready),
                str(out),
                _Batches(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=policy.static_reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    return {
        "format": "QDQ",
        "symbolic_shape_inference": symbolic,
        "weights": "int8 per channel" + (", 7-bit range" if policy.static_reduce_range else ""),
        "activations": "uint8 per tensor, calibrated min/max",
        "calibration_batches": len(feeds),
    }


def _pre_process(source: Path, target: Path) -> bool:
    """quant_pre_process, without symbolic shape inference when it cannot finish (data-dependent
    shapes such as trimmed padding); returns whether symbolic inference ran.

    It runs in a scratch folder: ONNX Runtime's shape inference leaves its temporary files
    (sym_shape_infer_temp.onnx and a large <uuid>.data) in the working directory."""
    source, target = source.resolve(), target.resolve()
    with tempfile.TemporaryDirectory(prefix="quant-pre-") as scratch, chdir(scratch):
        try:
            quant_pre_process(str(source), str(target))
            return True
        except Exception:  # onnxruntime raises a bare Exception("Incomplete symbolic shape inference")
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
            return False


def fp16(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    """Weights and arithmetic in float16, inputs and outputs kept float32 (for GPU targets); ai.onnx.ml
    operators (float32 only) stay float32 behind casts."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    ctx.progress(10, "converting to float16")
    proto = graph.load(source)
    graph.declare_ml_types(proto)
    model = OnnxModel(proto)
    model.convert_float_to_float16(keep_io_types=True)
    model.topological_sort()
    graph.save(model.model, out)
    return {"precision": "float16", "io": "float32", "intended_for": "GPU (slower on most CPUs)"}
