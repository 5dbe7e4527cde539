"""Evaluation data: a model's inputs, its expected answers and optional training data.

An evaluation set is an ``.npz`` archive read with ``allow_pickle=False`` (it can carry no code).
Array names follow one convention:

* ``input:<name>`` — the model input called ``<name>``; or a single array ``inputs`` for a
  model with exactly one input (stored under the key ``""`` and matched to that input later);
* ``labels`` (optional) — class ids (classification), targets (regression) or reference
  embeddings (embedding), one row per sample;
* ``train:<name>`` (optional) — extra data such as ``train:inputs``/``train:labels`` used to
  train a distilled student. These never feed the evaluated model.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SINGLE_INPUT = ""
MAX_ARRAYS = 64
MAX_TOTAL_BYTES = 2 * 1024**3
_NUMERIC_KINDS = "biuf"


class EvalDataError(ValueError):
    """The evaluation data cannot be used; the message says why, for a person to fix it."""


@dataclass(frozen=True)
class EvalSet:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(next(iter(self.inputs.values())))


def load_evalset(path: str | Path) -> EvalSet:
    """Read and check an ``.npz`` evaluation set; raise :class:`EvalDataError` when unusable."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"evaluation data file {path.name!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise EvalDataError(f"{path.name!r} is not an .npz archive (numpy.savez output)")
    _check_archive_limits(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                arrays[name] = npz[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise EvalDataError(
                "the archive holds object (pickled) arrays, which are never loaded: save plain numeric arrays"
            ) from exc
        raise EvalDataError(f"cannot read {path.name!r}: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise EvalDataError(f"cannot read {path.name!r}: {exc}") from exc
    return evalset_from_arrays(arrays)


def evalset_from_arrays(arrays: dict[str, np.ndarray]) -> EvalSet:
    """Split named arrays by the naming convention and check them."""
    inputs: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    labels: np.ndarray | None = None
    for name, array in arrays.items():
        _check_array(name, array)
        if name == "inputs":
            inputs[SINGLE_INPUT] = array
        elif name.startswith("input:") and len(name) > len("input:"):
            inputs[name[len("input:") :]] = array
        elif name == "labels":
            labels = array
        elif name.startswith("train:") and len(name) > len("train:"):
            extra[name[len("train:") :]] = array
        else:
            raise EvalDataError(
                f"unexpected array {name!r}: name arrays 'inputs', 'input:<model input name>', "
                "'labels' or 'train:<name>'"
            )
    if not inputs:
        raise EvalDataError("no model inputs: add an array named 'inputs' or 'input:<name>'")
    if SINGLE_INPUT in inputs and len(inputs) > 1:
        raise EvalDataError("use either one 'inputs' array or 'input:<name>' arrays, not both")
    _check_lengths("input", inputs)
    if extra:
        _check_lengths("training", extra)
    count = len(next(iter(inputs.values())))
    if labels is not None and len(labels) != count:
        raise EvalDataError(f"'labels' has {len(labels)} rows but the inputs have {count} samples")
    return EvalSet(inputs, labels, extra)


def _check_archive_limits(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if len(members) > MAX_ARRAYS:
        raise EvalDataError(f"the archive holds {len(members)} arrays; at most {MAX_ARRAYS} allowed")
    total = sum(member.file_size for member in members)
    if total > MAX_TOTAL_BYTES:
        raise EvalDataError(
            f"the arrays take {total / 1024**3:.1f} GiB uncompressed; "
            f"at most {MAX_TOTAL_BYTES / 1024**3:.0f} GiB allowed"
        )


def _check_array(name: str, array: np.ndarray) -> None:
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise EvalDataError(f"array {name!r} has dtype {array.dtype}; only bool, integer and float arrays are accepted")
    if array.ndim == 0:
        raise EvalDataError(f"array {name!r} is a scalar; it needs one row per sample")
    if len(array) == 0:
        raise EvalDataError(f"array {name!r} is empty")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise EvalDataError(f"array {name!r} holds {bad} NaN or infinite values")


def _check_lengths(what: str, arrays: dict[str, np.ndarray]) -> None:
    lengths = {name or "inputs": len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise EvalDataError(f"{what} arrays have different numbers of rows ({detail})")
