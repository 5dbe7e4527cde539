"""What one request may hold, checked before the server spends memory on it.

Every body format goes through the same limits: bytes on the wire, elements per request (all
inputs together) and rows per request (the batch). ``.npy`` and ``.npz`` bodies are checked from
their headers before any array is read: the zip directory's declared sizes (a decompression bomb
declares what it would unpack to, and zipfile never unpacks more than it declared) and each
member's ``.npy`` header (shape and dtype, so the element count is known before the data).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO

import numpy as np

from serving.errors import InputError

NPY_HEADER_LIMIT = 10000  # bytes of an .npy header numpy parses (its own default)


class LimitExceeded(InputError):
    """The request is larger than this server takes (HTTP 413); the message states the limit."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024
    max_json_bytes: int = 8 * 1024 * 1024  # JSON numbers take ~30x their text in memory while parsed
    max_elements: int = 16 * 1024 * 1024  # per request, all inputs together
    max_batch: int = 1024  # rows per request

    def check_body(self, size: int, json_body: bool) -> None:
        limit = self.max_json_bytes if json_body else self.max_body_bytes
        if size > limit:
            kind = "a JSON body" if json_body else "a body"
            raise LimitExceeded(f"{kind} of {size} bytes is over the limit of {limit} bytes")

    def check_shapes(self, shapes: Iterable[tuple[str, tuple[int, ...]]]) -> None:
        """Element and batch limits on declared shapes (before the data is read)."""
        total = 0
        for name, shape in shapes:
            if shape and shape[0] > self.max_batch:
                raise LimitExceeded(f"input {name!r} has a batch of {shape[0]} rows; the limit is {self.max_batch}")
            total += math.prod(shape)
            if total > self.max_elements:
                raise LimitExceeded(
                    f"the request holds more than {self.max_elements} elements (the limit per request)"
                )

    def check_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.check_shapes((name, np.shape(array)) for name, array in arrays.items())


def _npy_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(stream)
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in reader:
        raise InputError(f"{name}: .npy format version {version} is not supported")
    shape, _fortran, dtype = reader[version](stream, max_header_size=NPY_HEADER_LIMIT)
    if dtype.hasobject:
        raise InputError(f"{name}: the array holds pickled objects; send numbers (or strings) only")
    return tuple(int(dim) for dim in shape), dtype


def _read_checked(stream: IO[bytes], size: int, name: str, limits: Limits,
                  seen: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """Read one .npy array of ``size`` bytes (header included) from ``stream`` after its header passed
    the limits (with the arrays seen before) and declares no more data than there is."""
    start = stream.tell()
    shape, dtype = _npy_header(stream, name)
    limits.check_shapes([*seen, (name, shape)])
    if math.prod(shape) * dtype.itemsize > size - (stream.tell() - start):
        raise InputError(f"{name}: the header declares {list(shape)} {dtype}, more data than the body holds")
    seen.append((name, shape))
    stream.seek(start)  # a zip member seeks back by unpacking its first bytes again: only the header
    return np.lib.format.read_array(stream, allow_pickle=False, max_header_size=NPY_HEADER_LIMIT)


def read_npy(body: bytes, limits: Limits) -> np.ndarray:
    try:
        return _read_checked(io.BytesIO(body), len(body), "the .npy body", limits, [])
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"body is not a readable .npy array without pickled objects: {error}") from None


def read_npz(body: bytes, limits: Limits, max_members: int) -> dict[str, np.ndarray]:
    """Named arrays of an .npz body; the zip directory and every member's header checked first."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.infolist()
            if len(members) > max_members:
                raise InputError(f"the .npz body holds {len(members)} arrays; the model takes {max_members}")
            unpacked = sum(member.file_size for member in members)
            if unpacked > limits.max_body_bytes:
                raise LimitExceeded(
                    f"the .npz body would unpack to {unpacked} bytes; the limit is {limits.max_body_bytes} bytes"
                )
            arrays: dict[str, np.ndarray] = {}
            seen: list[tuple[str, tuple[int, ...]]] = []
            for member in members:
                name = member.filename.removesuffix(".npy")
                with archive.open(member) as stream:
                    arrays[name] = _read_checked(stream, member.file_size, name, limits, seen)
            return arrays
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"body is not a readable .npz archive without pickled objects: {error}") from None
