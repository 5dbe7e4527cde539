"""Cheap checks of uploaded files in the web process, before anything is stored.

Deep checks (onnx.checker, running the model on the evaluation data) happen in the validate stage
on a worker. Nothing here unpickles or executes anything.
"""

import zipfile

import numpy as np
from django.conf import settings

from releases.uploads import HashedUpload

MODEL_FORMATS = {".onnx": "onnx", ".safetensors": "safetensors", ".pt2": "pt2"}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".joblib", ".ckpt")
MAX_EVAL_ARRAYS = 64
ZIP_MAGIC = b"PK\x03\x04"


class BadUpload(ValueError):
    """An upload that can never be used; the API answers 400 with the message."""


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
    return fmt


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
