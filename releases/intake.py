"""Cheap checks of uploaded files in the web process, before anything is stored.

Deep checks (onnx.checker, running the model on the evaluation data) happen in the validate stage
on a worker. Nothing here unpickles or executes anything.
"""

import zipfile

import numpy as np
from django.conf import settings

from releases.uploads import BadUpload, HashedUpload

MODEL_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors", ".pt2": "pt2"}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".joblib", ".ckpt")
MAX_EVAL_ARRAYS = 64
ZIP_MAGIC = b"PK\x03\x04"


def _head(upload: HashedUpload, n: int = 16) -> bytes:
    upload.seek(0)
    data = upload.read(n)
    upload.seek(0)
    return data


def model_format(upload: HashedUpload) -> str:
    name = (upload.name or "").lower()
    if upload.size == 0:
        raise BadUpload("artifact is empty (0 bytes)")
    head = _head(upload)
    if name.endswith(PICKLE_SUFFIXES) or head[:1] == b"\x80":
        raise BadUpload("artifact looks like a pickle; Slipway never loads pickled files. Send ONNX, "
                        "safetensors weights with a registered architecture, or a torch.export archive (.pt2)")
    suffix = next((s for s in MODEL_FORMATS if name.endswith(s)), None)
    if suffix is None:
        raise BadUpload(f"artifact {upload.name!r} has an unknown format; expected one of "
                        f"{', '.join(MODEL_FORMATS)}")
    fmt = MODEL_FORMATS[suffix]
    if fmt == "pt2" and head[:4] != ZIP_MAGIC:
        raise BadUpload("artifact is named .pt2 but is not a torch.export archive (zip)")
    if fmt == "safetensors" and (len(head) < 9 or head[8:9] != b"{"):
        raise BadUpload("artifact is named .safetensors but has no safetensors header")
    if fmt == "onnx" and head[:4] == ZIP_MAGIC:
        raise BadUpload("artifact is named .onnx but is a zip archive")
    if fmt == "onnx":
        check_onnx_structure(upload)
    return fmt


ONNX_GRAPH_FIELD, ONNX_IR_VERSION_FIELD = 7, 1
WIRE_VARINT, WIRE_FIXED64, WIRE_LENGTH, WIRE_FIXED32 = 0, 1, 2, 5


def _varint(upload: HashedUpload) -> int:
    value = shift = 0
    for _ in range(10):
        byte = upload.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError("a varint longer than 10 bytes")


def _fields(upload: HashedUpload, start: int, end: int) -> dict[int, tuple[int, int, int]]:
    """Walk the protobuf fields between two offsets without decoding them: {number: (wire type, start, end)}
    of the last of each number. Raises ValueError/EOFError where the bytes are not a protobuf message."""
    fields, pos = {}, start
    upload.seek(start)
    while pos < end:
        key = _varint(upload)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == WIRE_VARINT:
            _varint(upload)
            body = upload.tell()
        elif wire == WIRE_LENGTH:
            length = _varint(upload)
            body = upload.tell() + length
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            body = upload.tell() + (8 if wire == WIRE_FIXED64 else 4)
        else:
            raise ValueError(f"wire type {wire} (field {number})")
        if body > end:
            raise EOFError(f"field {number} runs {body - end} bytes past the end")
        fields[number] = (wire, upload.tell(), body)
        upload.seek(body)
        pos = body
    return fields


def check_onnx_structure(upload: HashedUpload) -> None:
    """Refuse an .onnx that is not even a protobuf ModelProto with a graph (truncated, corrupt, another format),
    reading only its field headers (two levels: the model and its graph), never its weights."""
    try:
        model = _fields(upload, 0, upload.size)
        graph = model.get(ONNX_GRAPH_FIELD)
        if graph is None or graph[0] != WIRE_LENGTH:
            raise LookupError("it has no graph")
        if model.get(ONNX_IR_VERSION_FIELD, (None,))[0] != WIRE_VARINT:
            raise LookupError("it has no IR version")
        _fields(upload, graph[1], graph[2])
    except EOFError:
        raise BadUpload(f"artifact is a truncated ONNX file: its protobuf ends early ({upload.size} bytes "
                        f"received, sha256 {upload.sha256})") from None
    except LookupError as exc:
        raise BadUpload(f"artifact is not an ONNX model: {exc} (sha256 {upload.sha256})") from None
    except ValueError as exc:
        raise BadUpload(f"artifact is not a readable ONNX file (sha256 {upload.sha256}): {exc}") from None
    finally:
        upload.seek(0)


def check_eval_data(upload: HashedUpload) -> list[str]:
    """Check an .npz without loading its data: names, dtypes (no objects), sizes. Returns array names."""
    if upload.size == 0:
        raise BadUpload("eval_data is empty (0 bytes)")
    if _head(upload, 4) != ZIP_MAGIC:
        raise BadUpload("eval_data is not an .npz file (numpy.savez)")
    try:
        assert upload.file is not None, "a staged upload is open"
        with zipfile.ZipFile(upload.file) as archive:
            infos = archive.infolist()
            if not infos:
                raise BadUpload("eval_data holds no arrays")
            if len(infos) > MAX_EVAL_ARRAYS:
                raise BadUpload(f"eval_data holds {len(infos)} arrays; at most {MAX_EVAL_ARRAYS}")
            total, limit = sum(i.file_size for i in infos), settings.SLIPWAY_MAX_EVAL_UNPACKED_BYTES
            if total > limit:
                raise BadUpload(f"eval_data unpacks to {total} bytes; at most {limit}")
            names = []
            for info in infos:
                if not info.filename.endswith(".npy") or "/" in info.filename or "\\" in info.filename:
                    raise BadUpload(f"eval_data member {info.filename!r} is not a plain .npy array")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    _, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise BadUpload(f"eval_data array {info.filename[:-4]!r} holds Python objects; "
                                    "only numeric arrays are accepted")
                names.append(info.filename[:-4])
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        if isinstance(exc, BadUpload):
            raise
        raise BadUpload(f"eval_data is not a readable .npz: {exc}") from exc
    if not any(n == "inputs" or n.startswith("input:") for n in names):
        raise BadUpload("eval_data has no inputs: name arrays 'inputs' (single-input models) or "
                        "'input:<model input name>'")
    return names
