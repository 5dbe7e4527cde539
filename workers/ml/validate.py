"""Check that an ONNX model is well formed, fits its evaluation data and runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort

from workers.ml.evalset import SINGLE_INPUT, EvalSet
from workers.ml.outputs import (
    OutputsUnusable,
    check_labels_match,
    declared_classes,
    judged_output,
    output_infos,
    run_batches,
)
from workers.ml.runtime import ORT_TO_NUMPY, make_session, model_size_bytes

# (data dtype, model dtype) pairs converted without loss of meaning before feeding the model.
SAFE_CASTS = {
    (np.dtype(np.float64), np.dtype(np.float32)),
    (np.dtype(np.int32), np.dtype(np.int64)),
}

Dim = int | str | None


class ModelInvalid(ValueError):
    """The model cannot be released as it is; the message says why."""


class TensorSpec(NamedTuple):
    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: list[Dim]  # int for a fixed dimension, a name or None for a free one


@dataclass(frozen=True)
class ModelSignature:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None  # the standard ONNX opset; None for a model made of ai.onnx.ml operators only
    size_bytes: int


def validate_model(model_path: str | Path, evalset: EvalSet, task: str | None = None) -> ModelSignature:
    """Check the model file, its fit with ``evalset`` and one real run; raise :class:`ModelInvalid`.

    With ``task`` the output that task scores must also be comparable with the evaluation labels
    (an ONNX-ML classifier's classes against the label values).
    """
    path = Path(model_path)
    if not path.is_file():
        raise ModelInvalid(f"model file {path.name!r} does not exist")
    try:
        onnx.checker.check_model(str(path))
        proto = onnx.load(str(path), load_external_data=False)
        opset = _default_opset(proto)
    except ModelInvalid:
        raise
    except Exception as exc:  # the checker and the protobuf parser raise several kinds
        raise ModelInvalid(f"not a valid ONNX model: {_first_line(exc)}") from exc
    try:
        session = make_session(path, "cpu", threads=1)  # one thread per worker process: they share the cores
    except Exception as exc:  # onnxruntime raises its own non-standard exception classes
        raise ModelInvalid(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from exc
    inputs = specs_of(session.get_inputs())
    try:
        infos = output_infos(session)
    except OutputsUnusable as exc:
        raise ModelInvalid(str(exc)) from None
    feeds = match_inputs(inputs, evalset)
    fixed = fixed_batch_size(inputs)
    names = [info.name for info in infos]
    try:
        outputs = run_batches(session, feeds, min(fixed or 1, evalset.num_samples), fixed or 1, bool(fixed), names)
    except OutputsUnusable as exc:
        raise ModelInvalid(str(exc)) from None
    except Exception as exc:
        raise ModelInvalid(f"the model fails on the first sample: {_first_line(exc)}") from exc
    for name, value in zip(names, outputs, strict=True):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ModelInvalid(f"output {name!r} is NaN or infinite on the first sample")
    if task is not None:
        try:
            check_labels_match(task, judged_output(task, infos), declared_classes(proto), evalset.labels)
        except OutputsUnusable as exc:
            raise ModelInvalid(str(exc)) from None
    return ModelSignature(inputs, output_specs(session.get_outputs()), opset, model_size_bytes(path))


def specs_of(nodes: list[ort.NodeArg]) -> list[TensorSpec]:
    """Name, dtype and shape of a session's inputs (or tensor outputs)."""
    return [TensorSpec(n.name, _numpy_dtype(n.type).name, list(n.shape)) for n in nodes]


def output_specs(nodes: list[ort.NodeArg]) -> list[TensorSpec]:
    """Like :func:`specs_of`; an output that is no tensor (an ONNX-ML sequence of maps) keeps its type text."""
    return [TensorSpec(n.name, ORT_TO_NUMPY[n.type].name if n.type in ORT_TO_NUMPY else n.type, list(n.shape))
            for n in nodes]


def fixed_batch_size(inputs: list[TensorSpec]) -> int | None:
    """The batch size the model insists on (first dimension fixed), or None if it is free.

    Raise :class:`ModelInvalid` when the inputs fix different batch sizes, or one below 1.
    """
    sizes = {spec.name: spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int)}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise ModelInvalid(f"the model's inputs fix different batch sizes ({detail}): no batch fits them all")
    if any(size < 1 for size in sizes.values()):
        raise ModelInvalid(f"the model fixes its batch size at {next(iter(sizes.values()))}: it can take no sample")
    return next(iter(sizes.values()), None)


def match_inputs(inputs: list[TensorSpec], evalset: EvalSet) -> dict[str, np.ndarray]:
    """The evaluation arrays keyed by model input name, safely cast; raise :class:`ModelInvalid`.

    Arrays the model does not take are left out.
    """
    data = dict(evalset.inputs)
    if SINGLE_INPUT in data:
        if len(inputs) != 1:
            names = ", ".join(spec.name for spec in inputs)
            raise ModelInvalid(
                f"the evaluation data has one unnamed 'inputs' array but the model takes "
                f"{len(inputs)} inputs ({names}): name them 'input:<name>'"
            )
        data = {inputs[0].name: data[SINGLE_INPUT]}
    feeds = {}
    for spec in inputs:
        if spec.name not in data:
            raise ModelInvalid(
                f"model input {spec.name!r} is missing from the evaluation data "
                f"(it has: {', '.join(sorted(data)) or 'nothing'})"
            )
        feeds[spec.name] = _fit(spec, data[spec.name])
    return feeds


def _fit(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    wanted = np.dtype(spec.dtype)
    if array.dtype != wanted:
        if (array.dtype, wanted) not in SAFE_CASTS:
            raise ModelInvalid(f"input {spec.name!r}: the model takes {wanted.name}, the data is {array.dtype.name}")
        array = array.astype(wanted)
    if array.ndim != len(spec.shape):
        raise ModelInvalid(
            f"input {spec.name!r}: the model takes rank {len(spec.shape)} {_shape_text(spec.shape)}, "
            f"the data has rank {array.ndim} {list(array.shape)}"
        )
    for axis, (dim, actual) in enumerate(zip(spec.shape[1:], array.shape[1:], strict=True), 1):
        if isinstance(dim, int) and dim != actual:
            raise ModelInvalid(
                f"input {spec.name!r}: dimension {axis} must be {dim} "
                f"{_shape_text(spec.shape)}, the data has {actual} {list(array.shape)}"
            )
    return array


def _numpy_dtype(ort_type: str) -> np.dtype:
    try:
        return ORT_TO_NUMPY[ort_type]
    except KeyError:
        raise ModelInvalid(f"unsupported tensor type {ort_type}") from None


def _default_opset(model: onnx.ModelProto) -> int | None:
    """The standard opset; None for a model that only uses ai.onnx.ml (a scikit-learn classifier)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    if any(entry.domain == "ai.onnx.ml" for entry in model.opset_import):
        return None
    raise ModelInvalid("the model declares neither a standard ONNX opset nor the ai.onnx.ml one")


def _shape_text(shape: list[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
