"""The monitoring path of the model server: input summaries, abnormal outputs and a prediction log.

A release's *profile* (``profile.json`` beside the model, made from its evaluation data when it
ships) names the features to summarise with their fixed bin edges, the range each output took on
the evaluation data, and how to read a prediction compactly (argmax class or value). Per request
the server only checks the outputs for NaN, infinities and values outside that range (a few
whole-array operations) and keeps references to the arrays; every FOLD_ROWS rows, and before each
report, the kept inputs are binned and the predictions logged in one vectorised pass. Slipway
collects all of it from ``GET /v1/monitoring?after=<seq>``.

The server runs one gunicorn worker process (serving/server.py) with threads, so this in-memory
state is the whole server's; a lock keeps the threads' updates consistent.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

PROFILE_VERSION = 1
ABNORMAL_KINDS = ("nan", "inf", "out_of_range")
MAX_PREDICTIONS_PER_ANSWER = 5000
FOLD_ROWS = 1024  # rows kept before they are binned and logged together
_NORMAL = MappingProxyType(dict.fromkeys(ABNORMAL_KINDS, 0))


def bin_index(values: np.ndarray, edges: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Bin of each value, column by column: the number of the column's edges at or below it.

    ``values`` is [rows, features]; ``edges`` is [features, most edges] padded with +inf; ``widths``
    the real number of edges of each feature. NaN falls in bin 0.
    """
    bins = (values[:, :, None] >= edges[None, :, :]).sum(axis=2)
    return np.minimum(bins, widths)


@dataclass(frozen=True)
class Feature:
    input: str
    index: int  # position in the input's row, flattened
    edges: tuple[float, ...]

    @property
    def label(self) -> str:
        return f"{self.input}[{self.index}]" if self.input else f"[{self.index}]"


@dataclass(frozen=True)
class Profile:
    task: str
    features: tuple[Feature, ...]
    reference: tuple[tuple[int, ...], ...]  # evaluation counts per feature and bin
    output_ranges: Mapping[str, tuple[float, float]]
    prediction_output: str | None
    prediction_kind: str  # "argmax", "value" or "none"

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.from_document(json.loads(path.read_text()))

    @classmethod
    def from_document(cls, document: Mapping) -> Profile:
        if document.get("version") != PROFILE_VERSION:
            raise ValueError(f"profile version {document.get('version')!r} is not {PROFILE_VERSION}")
        features = tuple(Feature(f["input"], int(f["index"]), tuple(map(float, f["edges"])))
                         for f in document["features"])
        reference = tuple(tuple(int(n) for n in counts) for counts in document["reference"])
        if [len(c) for c in reference] != [len(f.edges) + 1 for f in features]:
            raise ValueError("profile reference counts do not match the features' bins")
        prediction = document.get("prediction") or {}
        return cls(
            task=document.get("task", ""),
            features=features,
            reference=reference,
            output_ranges={name: (float(lo), float(hi)) for name, (lo, hi) in document.get("outputs", {}).items()},
            prediction_output=prediction.get("output"),
            prediction_kind=prediction.get("kind", "none"),
        )


class _InputBins:
    """The binning of one model input's features, precomputed for a vectorised update."""

    def __init__(self, name: str, features: Sequence[tuple[int, Feature]], offsets: Sequence[int]) -> None:
        self.name = name
        self.columns = np.array([feature.index for _, feature in features], dtype=np.intp)
        widest = max(len(feature.edges) for _, feature in features)
        self.edges = np.full((len(features), max(widest, 1)), np.inf)
        for row, (_, feature) in enumerate(features):
            self.edges[row, : len(feature.edges)] = feature.edges
        self.widths = np.array([len(feature.edges) for _, feature in features], dtype=np.intp)
        self.offsets = np.array([offsets[position] for position, _ in features], dtype=np.intp)

    def flat_bins(self, array: np.ndarray) -> np.ndarray:
        rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        values = rows[:, self.columns].astype(np.float64, copy=False)
        return (bin_index(values, self.edges, self.widths) + self.offsets).ravel()


class Watcher:
    """Everything the monitoring path keeps; ``observe`` runs once per answered prediction."""

    def __init__(self, profile: Profile | None, log_size: int = 10000) -> None:
        self.profile = profile
        self.boot = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._seq = 0
        self._log: deque[tuple[int, str, float, float]] = deque(maxlen=log_size)
        self.rows = 0
        self.abnormal = dict.fromkeys(ABNORMAL_KINDS, 0)
        self.crashes = 0
        self._pending: list[tuple[str, float, int, Mapping[str, np.ndarray], np.ndarray | None]] = []
        self._pending_rows = 0
        kind = profile.prediction_kind if profile is not None else None
        self._logged_output = profile.prediction_output if profile is not None and kind in ("argmax", "value") else None
        self._argmax = kind == "argmax"
        features = profile.features if profile else ()
        sizes = [len(f.edges) + 1 for f in features]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist() if sizes else [0]
        self._total_bins = offsets[-1]
        self._counts = np.zeros(self._total_bins, dtype=np.int64)
        by_input: dict[str, list[tuple[int, Feature]]] = {}
        for position, feature in enumerate(features):
            by_input.setdefault(feature.input, []).append((position, feature))
        self._bins = [_InputBins(name, group, offsets) for name, group in by_input.items()]
        ranges = profile.output_ranges if profile else {}
        self._ranges = {name: (lo - 1e-6 - 1e-6 * (hi - lo), hi + 1e-6 + 1e-6 * (hi - lo))
                        for name, (lo, hi) in ranges.items()}

    def _all_normal(self, outputs: Mapping[str, np.ndarray]) -> bool:
        """The common case, checked with a few whole-array operations: finite and inside the ranges."""
        for name, array in outputs.items():
            if array.dtype.kind != "f" or array.size == 0:
                continue
            low, high = array.min(), array.max()  # NaN propagates into both
            bounds = self._ranges.get(name, (-np.inf, np.inf))
            if not (bounds[0] <= low and high <= bounds[1] and np.isfinite(low) and np.isfinite(high)):
                return False
        return True

    def _abnormal_rows(self, outputs: Mapping[str, np.ndarray], rows: int) -> Mapping[str, int]:
        if self._all_normal(outputs):
            return _NORMAL
        nan = np.zeros(rows, dtype=bool)
        inf = np.zeros(rows, dtype=bool)
        outside = np.zeros(rows, dtype=bool)
        for name, array in outputs.items():
            if array.dtype.kind != "f" or array.ndim == 0 or array.shape[0] != rows:
                continue
            flat = array.reshape(rows, -1)
            nan |= np.isnan(flat).any(axis=1)
            inf |= np.isinf(flat).any(axis=1)
            if name in self._ranges:
                lo, hi = self._ranges[name]
                outside |= ((flat < lo) | (flat > hi)).any(axis=1)
        return {"nan": int(nan.sum()), "inf": int(inf.sum()), "out_of_range": int((outside & ~nan & ~inf).sum())}

    def _fold(self) -> None:
        """Bin the pending inputs and log the pending predictions, all rows at once (under the lock)."""
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        binned = []
        for bins in self._bins:
            arrays = [entry[3][bins.name] for entry in pending if bins.name in entry[3]]
            if arrays:
                binned.append(bins.flat_bins(np.concatenate(arrays) if len(arrays) > 1 else arrays[0]))
        if binned:
            self._counts += np.bincount(np.concatenate(binned), minlength=self._total_bins)
        if self._logged_output is None:
            return
        outputs = [entry[4] for entry in pending if entry[4] is not None]
        flat = (np.concatenate(outputs) if len(outputs) > 1 else outputs[0]).reshape(sum(e[2] for e in pending), -1)
        values = (flat.argmax(axis=1) if self._argmax else flat[:, 0]).tolist()
        row = 0
        for prediction_id, at, rows, _inputs, _outputs in pending:
            ids = [prediction_id] if rows == 1 else [f"{prediction_id}:{i}" for i in range(rows)]
            for row_id in ids:
                self._seq += 1
                self._log.append((self._seq, row_id, at, values[row]))
                row += 1

    def observe(self, prediction_id: str, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                rows: int) -> Mapping[str, int]:
        """Record one answered request of ``rows`` rows; returns its abnormal row counts by kind.

        Only the abnormal-output check runs now; the inputs and outputs are kept (by reference) and
        binned and logged FOLD_ROWS rows at a time, or when a report is asked for."""
        abnormal = self._abnormal_rows(outputs, rows)
        logged = outputs.get(self._logged_output) if self._logged_output is not None else None
        entry = (prediction_id, time.time(), rows, inputs, logged)
        with self._lock:
            self.rows += rows
            if abnormal is not _NORMAL:
                for kind, n in abnormal.items():
                    self.abnormal[kind] += n
            self._pending.append(entry)
            self._pending_rows += rows
            if self._pending_rows >= FOLD_ROWS:
                self._fold()
        return abnormal

    def crashed(self) -> None:
        with self._lock:
            self.crashes += 1

    def report(self, after: int) -> dict[str, object]:
        """The cumulative summaries since the server started, and the logged predictions after ``after``."""
        with self._lock:
            self._fold()
            counts = self._counts.tolist()
            predictions = [list(entry) for entry in self._log if entry[0] > after][:MAX_PREDICTIONS_PER_ANSWER]
            document = {"boot": self.boot, "rows": self.rows, "abnormal": dict(self.abnormal),
                        "crashes": self.crashes, "last_seq": self._seq}
        features = self.profile.features if self.profile else ()
        start, summaries = 0, []
        for feature, reference in zip(features, self.profile.reference if self.profile else (), strict=True):
            end = start + len(reference)
            summaries.append({"name": feature.label, "reference": list(reference), "counts": counts[start:end]})
            start = end
        document.update(features=summaries, predictions=predictions,
                        task=self.profile.task if self.profile else "")
        return document
