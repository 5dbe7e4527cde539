"""Request and response bodies: JSON, a single .npy array, or an .npz archive of named arrays.

Binary bodies are read with ``allow_pickle=False``: an upload never runs code, and their headers
are checked against the server's limits before any array is read (serving/limits.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from serving.errors import InputError
from serving.limits import Limits, read_npy, read_npz

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"


class UnsupportedMediaType(InputError):
    """The request's Content-Type is not one the server reads."""


@dataclass(frozen=True)
class DecodedRequest:
    inputs: Mapping[str, object] | object
    binary: bool


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _decode_json(body: bytes, limits: Limits, _inputs: int) -> DecodedRequest:
    limits.check_body(len(body), json_body=True)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or "inputs" not in document:
        raise InputError('body must be a JSON object like {"inputs": {"name": [[...]]}} or {"inputs": [[...]]}')
    inputs = document["inputs"]
    if not isinstance(inputs, dict | list):
        raise InputError('"inputs" must be an object of named arrays or, for a single-input model, an array')
    return DecodedRequest(inputs, binary=False)


def _decode_npy(body: bytes, limits: Limits, _inputs: int) -> DecodedRequest:
    return DecodedRequest(read_npy(body, limits), binary=True)


def _decode_npz(body: bytes, limits: Limits, inputs: int) -> DecodedRequest:
    return DecodedRequest(read_npz(body, limits, max_members=inputs), binary=True)


_DECODERS = {JSON: _decode_json, NPY: _decode_npy, NPZ: _decode_npz, "application/zip": _decode_npz}


def decode(content_type: str, body: bytes, limits: Limits, inputs: int) -> DecodedRequest:
    """The request's arrays; ``inputs`` is how many inputs the model takes (an .npz holds no more)."""
    kind = media_type(content_type) or JSON
    if kind not in _DECODERS:
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not supported; use {JSON}, {NPY} or {NPZ}")
    return _DECODERS[kind](body, limits, inputs)


def encode_binary(outputs: Mapping[str, np.ndarray]) -> tuple[str, bytes]:
    """One output travels as .npy, several as an .npz archive keyed by output name."""
    buffer = io.BytesIO()
    if len(outputs) == 1:
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
        return NPY, buffer.getvalue()
    np.savez(buffer, allow_pickle=False, **dict(outputs))
    return NPZ, buffer.getvalue()


def encode_json(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def outputs_to_lists(outputs: Mapping[str, np.ndarray]) -> dict[str, object]:
    return {name: array.tolist() for name, array in outputs.items()}
