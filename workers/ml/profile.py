"""A release's monitoring profile (serving/watch.py reads it): made once from its evaluation data.

Features: up to MAX_FEATURES numeric positions of each input row, evenly spread, each with decile
bin edges of the evaluation values and the evaluation counts per bin (the reference that live
inputs are compared with). Outputs: the range each float output took on the evaluation data.
Prediction: how the serving runtime logs a prediction compactly (argmax class or first value).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving.watch import PROFILE_VERSION, bin_index
from workers.ml.evalset import EvalSet
from workers.ml.runtime import make_session
from workers.ml.validate import fixed_batch_size, match_inputs, specs_of

MAX_FEATURES = 64
QUANTILES = np.linspace(0.1, 0.9, 9)
CHUNK_ROWS = 256


def feature_edges(column: np.ndarray) -> list[float]:
    """Decile edges of one feature's evaluation values, duplicates dropped (a constant has one edge)."""
    return np.unique(np.quantile(column.astype(np.float64), QUANTILES)).tolist()


def reference_counts(column: np.ndarray, edges: list[float]) -> list[int]:
    padded = np.array([edges or [np.inf]])
    bins = bin_index(column.astype(np.float64).reshape(-1, 1), padded, np.array([len(edges)]))
    return np.bincount(bins.ravel(), minlength=len(edges) + 1).tolist()


def _features(feeds: dict[str, np.ndarray]) -> tuple[list[dict], list[list[int]]]:
    features, reference = [], []
    for name, array in feeds.items():
        if array.dtype.kind not in "biuf":
            continue
        rows = array.reshape(len(array), -1)
        width = rows.shape[1]
        positions = np.unique(np.linspace(0, width - 1, min(width, MAX_FEATURES)).round().astype(int))
        for index in positions.tolist():
            edges = feature_edges(rows[:, index])
            features.append({"input": name, "index": index, "edges": edges})
            reference.append(reference_counts(rows[:, index], edges))
    return features, reference


def _outputs(model_path: Path, feeds: dict[str, np.ndarray], batch: int | None) -> dict[str, np.ndarray]:
    """The model's outputs on every evaluation row (in chunks; a fixed batch size drops the remainder)."""
    session = make_session(model_path, "cpu", spinning=False)
    names = [node.name for node in session.get_outputs()]
    step = batch or CHUNK_ROWS
    count = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, count - step + 1 if batch else count, step):
        outputs = session.run(names, {name: array[start:start + step] for name, array in feeds.items()})
        for name, value in zip(names, outputs, strict=True):
            parts[name].append(np.asarray(value))
    return {name: np.concatenate(chunks) for name, chunks in parts.items() if chunks}


def _prediction(task: str, outputs: dict[str, np.ndarray]) -> dict[str, str | None]:
    if task not in ("classification", "regression") or not outputs:
        return {"output": None, "kind": "none"}
    name, first = next(iter(outputs.items()))
    width = int(np.prod(first.shape[1:])) if first.ndim > 1 else 1
    kind = "argmax" if task == "classification" and width > 1 else "value"
    return {"output": name, "kind": kind}


def build_profile(model_path: Path, evalset: EvalSet, task: str) -> dict:
    """The profile document of the model at ``model_path`` on its evaluation data."""
    session = make_session(model_path, "cpu", spinning=False)
    inputs = specs_of(session.get_inputs())
    feeds = match_inputs(inputs, evalset)
    features, reference = _features(feeds)
    outputs = _outputs(model_path, feeds, fixed_batch_size(inputs))
    ranges = {name: [float(np.nanmin(value)), float(np.nanmax(value))]
              for name, value in outputs.items() if value.dtype.kind == "f" and value.size}
    return {"version": PROFILE_VERSION, "task": task, "features": features, "reference": reference,
            "outputs": ranges, "prediction": _prediction(task, outputs)}


def write_profile(model_path: Path, evalset: EvalSet, task: str, destination: Path) -> Path:
    """Build the profile and write it atomically to ``destination`` (kept when it is there already)."""
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    partial.write_text(json.dumps(build_profile(model_path, evalset, task), separators=(",", ":")))
    partial.replace(destination)
    return destination
