"""One ONNX model in an ONNX Runtime session: integrity check, input validation, inference.

The model file is copied alone into a private directory (mode 0700) and checked there before ONNX
Runtime opens it, so a model cannot read another file beside it in the artifact store: a tensor
kept as external data can only come from the model's own file (ONNX Runtime also refuses absolute
paths and paths that leave the model's directory). The copy is deleted once the session holds the
model.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from serving.errors import InferenceError, InputError, ModelLoadError
from serving.integrity import file_sha256

__all__ = ["InferenceError", "InputError", "ModelLoadError", "ModelRunner", "TensorSpec"]

_ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if not isinstance(dim, int) else str(dim) for dim in self.shape)
        return f"{self.name}: {self.dtype.name}[{dims}]"


def _tensor_spec(node: ort.NodeArg) -> TensorSpec:
    if node.type not in _ORT_DTYPES:
        raise ModelLoadError(f"input {node.name!r} has unsupported type {node.type}")
    return TensorSpec(node.name, _ORT_DTYPES[node.type], tuple(node.shape))


def _as_array(spec: TensorSpec, value: object) -> np.ndarray:
    """Convert one JSON value or decoded array to the input's dtype, refusing lossy or ragged data."""
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise InputError(f"input {spec.name!r} is not a rectangular array: {error}") from None
    if array.dtype == object and spec.dtype != object:
        raise InputError(f"input {spec.name!r} is not a rectangular array of numbers")
    if array.dtype.kind in "USO" and spec.dtype != object:
        raise InputError(f"input {spec.name!r} holds strings; the model expects {spec.dtype.name}")
    if spec.dtype.kind in "iu" and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise InputError(f"input {spec.name!r} holds fractional numbers; the model expects {spec.dtype.name}")
    try:
        return array.astype(spec.dtype, copy=False)
    except (TypeError, ValueError) as error:
        raise InputError(f"input {spec.name!r} cannot be read as {spec.dtype.name}: {error}") from None


def _check_shape(spec: TensorSpec, array: np.ndarray) -> None:
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} has {array.ndim} dimensions {list(array.shape)}; "
            f"the model expects {len(spec.shape)} ({spec.describe()})"
        )
    for axis, (got, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
        if isinstance(want, int) and want >= 0 and got != want:
            raise InputError(
                f"input {spec.name!r} has size {got} on axis {axis}; the model expects {want} ({spec.describe()})"
            )


def _output_spec(node: ort.NodeArg) -> TensorSpec:
    """Outputs of a type the protocol has no datatype for (sequences, maps) are described as BYTES."""
    return TensorSpec(node.name, _ORT_DTYPES.get(node.type, np.dtype(object)), tuple(node.shape or ()))


def _session(copy: Path, original: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    try:
        return ort.InferenceSession(str(copy), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for every load failure.
        if "external data" in str(error).lower():
            raise ModelLoadError(
                f"{original} keeps tensors as external data outside its own file; a release's artifact is "
                f"one file, so the model is refused: {error}"
            ) from error
        raise ModelLoadError(f"ONNX Runtime cannot load {original}: {error}") from error


class ModelRunner:
    """Loads the model once, validates requests against its signature and runs inference."""

    def __init__(self, path: Path, expected_sha256: str = "", intra_op_threads: int = 0,
                 workdir: Path | None = None) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        private = Path(tempfile.mkdtemp(prefix="slipway-model-", dir=workdir))  # mode 0700
        try:
            copy = private / "model.onnx"
            try:
                shutil.copyfile(path, copy)
            except OSError as error:
                raise ModelLoadError(f"model file {path} cannot be copied to {private}: {error}") from error
            if expected_sha256:
                actual = file_sha256(copy)
                if actual != expected_sha256.lower():
                    raise ModelLoadError(f"model file {path} has sha256 {actual}, expected {expected_sha256}")
            self._session = _session(copy, path, intra_op_threads)
        finally:
            shutil.rmtree(private, ignore_errors=True)
        self.inputs = [_tensor_spec(node) for node in self._session.get_inputs()]
        self.outputs = [_output_spec(node) for node in self._session.get_outputs()]
        self.output_names = [node.name for node in self._session.get_outputs()]

    def prepare(self, raw: Mapping[str, object] | object) -> dict[str, np.ndarray]:
        """Map a request's inputs (by name, or bare for a single-input model) to validated arrays."""
        if not isinstance(raw, Mapping):
            if len(self.inputs) != 1:
                names = ", ".join(spec.name for spec in self.inputs)
                raise InputError(f"the model has {len(self.inputs)} inputs ({names}); send them by name")
            raw = {self.inputs[0].name: raw}
        expected = {spec.name for spec in self.inputs}
        unknown = sorted(set(raw) - expected)
        missing = sorted(expected - set(raw))
        if unknown or missing:
            signature = "; ".join(spec.describe() for spec in self.inputs)
            raise InputError(f"unknown inputs {unknown}, missing inputs {missing}; the model takes {signature}")
        arrays = {}
        for spec in self.inputs:
            array = _as_array(spec, raw[spec.name])
            _check_shape(spec, array)
            arrays[spec.name] = array
        return arrays

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._session.run(self.output_names, dict(arrays))
        except InvalidArgument as error:
            raise InputError(f"the model rejected the inputs: {error}") from None
        except (Fail, RuntimeException) as error:
            raise InferenceError(f"the model failed on these inputs: {error}") from None
        return dict(zip(self.output_names, (np.asarray(output) for output in outputs), strict=True))

    def warm_up(self) -> None:
        """Run one inference on zeros (dynamic dimensions set to 1) so the first request is not slow."""
        arrays = {}
        for spec in self.inputs:
            shape = tuple(dim if isinstance(dim, int) and dim > 0 else 1 for dim in spec.shape)
            fill = "" if spec.dtype == object else 0
            arrays[spec.name] = np.full(shape, fill, dtype=spec.dtype)
        self.run(arrays)

    @staticmethod
    def batch_size(arrays: Mapping[str, np.ndarray]) -> int:
        first = next(iter(arrays.values()))
        return int(first.shape[0]) if first.ndim else 1
