"""The Open Inference Protocol (v2, REST): tensors in and out, JSON or the binary data extension.

A request is a JSON document ``{"id", "inputs": [{"name", "shape", "datatype", "data"}], "outputs":
[{"name"}], "parameters"}``. With the binary tensor data extension the JSON comes first (its length
in the ``Inference-Header-Content-Length`` header) and an input whose parameters carry
``binary_data_size`` takes that many bytes, in input order, from what follows; outputs asked for
with ``binary_data`` (or all, with the request parameter ``binary_data_output``) travel the same
way back. Datatypes must be the model's own: a FP64 tensor for a FP32 input is refused, not cast.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from serving.errors import InputError
from serving.limits import Limits

if TYPE_CHECKING:  # the model module imports ONNX Runtime; callers of the client helpers need not
    from serving.model import TensorSpec

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
EXTENSIONS = ("binary_tensor_data",)
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

# numpy dtype -> protocol datatype, and back.
DATATYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(object): "BYTES",
}
NUMPY_TYPES = {datatype: dtype for dtype, datatype in DATATYPES.items()}


def datatype(dtype: np.dtype) -> str:
    if dtype.kind in "US":
        return "BYTES"
    return DATATYPES[np.dtype(dtype)]


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # None: every output
    binary_outputs: frozenset[str] = field(default_factory=frozenset)


def tensor_metadata(spec: TensorSpec) -> dict[str, object]:
    shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in spec.shape]
    return {"name": spec.name, "datatype": datatype(spec.dtype), "shape": shape}


def _object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object")
    return value


def _shape(tensor: Mapping, name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of non-negative integers, not {shape!r}")
    return tuple(shape)


def _from_json(name: str, data: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if dtype.hasobject:
        flat = np.asarray(data, dtype=object).ravel()
        if not all(isinstance(item, str) for item in flat):
            raise InputError(f"input {name!r} is BYTES: its data must be strings")
    else:
        try:
            flat = np.asarray(data).ravel()
        except ValueError as error:
            raise InputError(f"input {name!r}: data is not a rectangular array: {error}") from None
        if flat.dtype.kind not in "biuf" or (flat.dtype.kind == "b") != (dtype.kind == "b"):
            raise InputError(f"input {name!r}: data does not hold {datatype(dtype)} values")
        if dtype.kind in "iu" and flat.dtype.kind == "f":
            raise InputError(f"input {name!r} is {datatype(dtype)}: its data holds fractional numbers")
    if flat.size != math.prod(shape):
        raise InputError(f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} values, data has {flat.size}")
    try:
        return flat.astype(dtype, copy=False).reshape(shape)
    except (TypeError, ValueError, OverflowError) as error:
        raise InputError(f"input {name!r}: data cannot be read as {datatype(dtype)}: {error}") from None


def _from_binary(name: str, chunk: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    count = math.prod(shape)
    if not dtype.hasobject:
        if len(chunk) != count * dtype.itemsize:
            raise InputError(f"input {name!r}: {len(chunk)} bytes of binary data for {count} "
                             f"{datatype(dtype)} values ({count * dtype.itemsize} bytes)")
        return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    items, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise InputError(f"input {name!r}: BYTES binary data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", chunk, offset)
        items.append(chunk[offset + 4: offset + 4 + length].decode("utf-8", errors="replace"))
        offset += 4 + length
    if offset != len(chunk) or len(items) != count:
        raise InputError(f"input {name!r}: BYTES binary data holds {len(items)} strings, shape needs {count}")
    return np.array(items, dtype=object).reshape(shape)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON document and the binary data after it (empty without the extension)."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InputError(f"{HEADER_LENGTH} is {header_length!r}; the body has {len(body)} bytes")
        json_part, binary = body[: int(header_length)], body[int(header_length):]
    try:
        document = json.loads(json_part)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"the inference request is not valid JSON: {error}") from None
    return _object(document, "the inference request"), binary


def parse_infer(document: dict, binary: bytes, specs: Sequence[TensorSpec], output_names: Sequence[str],
                limits: Limits) -> InferRequest:
    """Typed, shaped arrays of one inference request; the limits are checked on the declared shapes first."""
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InputError("id must be a string")
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InputError('"inputs" must be a non-empty list of {"name", "shape", "datatype", "data"} tensors')
    tensors = [_object(tensor, "each input") for tensor in tensors]
    by_name = {spec.name: spec for spec in specs}
    names = [tensor.get("name") for tensor in tensors]
    unknown = sorted(str(name) for name in names if name not in by_name)
    missing = sorted(set(by_name) - set(names))
    if unknown or missing or len(names) != len(set(names)):
        signature = "; ".join(spec.describe() for spec in specs)
        raise InputError(f"unknown inputs {unknown}, missing inputs {missing}; the model takes {signature}")
    shapes = [(tensor["name"], _shape(tensor, tensor["name"])) for tensor in tensors]
    limits.check_shapes(shapes)
    arrays, offset = {}, 0
    for tensor, (name, shape) in zip(tensors, shapes, strict=True):
        spec = by_name[name]
        if tensor.get("datatype") != datatype(spec.dtype):
            raise InputError(f"input {name!r} has datatype {tensor.get('datatype')!r}; "
                             f"the model expects {datatype(spec.dtype)}")
        size = _object(tensor.get("parameters", {}), f"input {name!r} parameters").get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise InputError(f"input {name!r} has no data (and no binary_data_size)")
            arrays[name] = _from_json(name, tensor["data"], shape, spec.dtype)
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InputError(f"input {name!r}: binary_data_size {size!r} is not within the "
                             f"{len(binary) - offset} bytes of binary data left")
        arrays[name] = _from_binary(name, binary[offset: offset + size], shape, spec.dtype)
        offset += size
    if offset != len(binary):
        raise InputError(f"{len(binary) - offset} bytes of binary data belong to no input")
    return InferRequest(request_id, arrays, *_requested_outputs(document, output_names))


def _requested_outputs(document: dict, output_names: Sequence[str]) -> tuple[list[str] | None, frozenset[str]]:
    parameters = _object(document.get("parameters", {}), "parameters")
    all_binary = parameters.get("binary_data_output") is True
    requested = document.get("outputs")
    if requested is None:
        return None, frozenset(output_names if all_binary else ())
    if not isinstance(requested, list):
        raise InputError('"outputs" must be a list of {"name"} objects')
    names: list[str] = []
    binary: set[str] = set()
    for entry in requested:
        name = _object(entry, "each requested output").get("name")
        if not isinstance(name, str) or name not in output_names:
            raise InputError(f"unknown output {name!r}; the model's outputs are {list(output_names)}")
        names.append(name)
        wants = _object(entry.get("parameters", {}), f"output {name!r} parameters").get("binary_data")
        if wants is True or (wants is None and all_binary):
            binary.add(name)
    return names, frozenset(binary)


def _binary_bytes(array: np.ndarray) -> bytes:
    if array.dtype == object or array.dtype.kind in "US":
        parts = [str(item).encode() if not isinstance(item, bytes) else item for item in array.ravel()]
        return b"".join(struct.pack("<I", len(part)) + part for part in parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_response(model_name: str, version: str, request_id: str, outputs: Mapping[str, np.ndarray],
                    binary_outputs: frozenset[str]) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of an inference response (the binary extension when any output asks for it)."""
    described, chunks = [], []
    for name, array in outputs.items():
        entry: dict[str, object] = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if name in binary_outputs:
            chunk = _binary_bytes(array)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            flat = array.ravel()
            entry["data"] = [str(v) for v in flat] if array.dtype == object else flat.tolist()
        described.append(entry)
    document = {"model_name": model_name, "model_version": version, "id": request_id, "outputs": described}
    head = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return [("Content-Type", "application/json")], head
    headers = [("Content-Type", BINARY_CONTENT_TYPE), (HEADER_LENGTH, str(len(head)))]
    return headers, b"".join([head, *chunks])


# --- for Slipway's own callers (smoke test, benches, tests): plain JSON tensors ----------------------


def model_path(model_name: str) -> str:
    return f"/v2/models/{quote(model_name, safe='')}"


def infer_path(model_name: str) -> str:
    return model_path(model_name) + "/infer"


def as_declared(inputs: Mapping[str, np.ndarray], metadata: Mapping) -> dict[str, np.ndarray]:
    """The arrays cast to the datatypes the model's metadata declares (names it does not know stay)."""
    declared = {tensor["name"]: NUMPY_TYPES.get(tensor["datatype"]) for tensor in metadata.get("inputs", [])}
    return {name: np.asarray(array).astype(declared[name]) if declared.get(name) is not None else np.asarray(array)
            for name, array in inputs.items()}


def request_document(inputs: Mapping[str, np.ndarray], request_id: str = "") -> dict[str, object]:
    """A JSON inference request for named arrays."""
    tensors = []
    for name, value in inputs.items():
        array = np.asarray(value)
        flat = array.ravel()
        data = [str(v) for v in flat] if array.dtype == object or array.dtype.kind in "US" else flat.tolist()
        tensors.append({"name": name, "shape": list(array.shape), "datatype": datatype(array.dtype), "data": data})
    document: dict[str, object] = {"inputs": tensors}
    if request_id:
        document["id"] = request_id
    return document


def response_outputs(document: Mapping) -> dict[str, np.ndarray]:
    """Named arrays of a JSON inference response (ValueError when it is not one)."""
    outputs = {}
    for tensor in document["outputs"]:
        dtype = NUMPY_TYPES[tensor["datatype"]]
        outputs[tensor["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
    return outputs
