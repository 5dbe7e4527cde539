"""Measure one ONNX model on its evaluation data: quality, parity, speed, size and memory.

Metric names and units (``Measurement(value, unit)``):

* classification: ``accuracy`` (ratio, vs labels); with a reference ``top1_agreement`` (ratio)
* regression: ``rmse``, ``mae`` (unit "target", the labels' unit)
* embedding: ``cosine_mean``, ``cosine_min`` (ratio) against the labels (reference embeddings)
  when present, otherwise against ``reference_outputs``; with a reference also
  ``parity_cosine_mean``, ``parity_cosine_min`` and ``top5_agreement`` (share of each sample's
  5 nearest neighbours in the evaluation set that the reference also finds)
* with a reference, any task with float outputs: ``parity_max_abs_diff`` (unit "abs")
* always: ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms`` (ms, batch 1 or the model's
  fixed batch, after warm-up), ``throughput_per_s`` (samples/s at ``throughput_batch``),
  ``size_bytes`` (bytes, file plus external data), ``peak_memory_bytes`` (bytes, loading the
  model and running one throughput batch, measured in a fresh process: :mod:`workers.ml.memory`).
  With ``latency_runs=0`` the latency percentiles are left to the caller (the evaluate stage
  times all models interleaved: :mod:`workers.ml.timing`).

The judged output is the first one, except for classifiers with a label output (ONNX-ML models
converted from scikit-learn, LightGBM or XGBoost), whose predicted labels are judged; probability
maps (``ZipMap``) are read as (N, classes) arrays (see :mod:`workers.ml.outputs`). A model with a
fixed batch size runs in batches of that size, the last one padded and the padding's rows dropped.
``Evaluation.outputs`` holds the judged output for every sample so the caller can pass the
original model's outputs as ``reference_outputs`` for its candidates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import onnxruntime as ort

from workers.ml import metrics
from workers.ml.evalset import EvalSet
from workers.ml.measure import batch_of, time_runs, warm_up
from workers.ml.memory import MemoryProbeError, peak_memory
from workers.ml.outputs import (
    OutputsUnusable,
    check_labels_match,
    declared_classes,
    judged_output,
    map_classes,
    output_infos,
    run_batches,
)
from workers.ml.runtime import load_proto, make_session, model_size_bytes, session_device
from workers.ml.validate import fixed_batch_size, match_inputs, specs_of

Task = Literal["classification", "regression", "embedding", "language_model"]
TASKS: tuple[Task, ...] = ("classification", "regression", "embedding")
Progress = Callable[[float, str], None]

EVAL_BATCH = 64
# One intra-op thread: how the model servers run a release (InstanceSpec.intra_op_threads), so the
# latency measured is the latency served; and several worker processes share the cores without
# their thread pools spinning against each other.
SESSION_THREADS = 1
NEIGHBOURS = 5


class Measurement(NamedTuple):
    value: float
    unit: str


class EvaluationError(ValueError):
    """The model ran but its results cannot be judged (e.g. NaN outputs); the message says why."""


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Measurement]
    outputs: np.ndarray
    device: str  # where it really ran: the requested device, or "cpu" after a fallback


def evaluate(
    model_path: str | Path,
    evalset: EvalSet,
    task: Task,
    *,
    reference_outputs: np.ndarray | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    latency_runs: int = 50,
    throughput_batch: int = 32,
    measure_memory: bool = True,
) -> Evaluation:
    """Evaluate the ONNX model at ``model_path``; see the module docstring for the metrics.

    Raises ``ModelInvalid`` when the data does not fit the model and :class:`EvaluationError`
    when its outputs cannot be judged.
    """
    if task not in TASKS:
        raise EvaluationError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    report = progress or (lambda percent, step: None)
    report(0, "loading model")
    session = make_session(model_path, device, threads=SESSION_THREADS)
    specs = specs_of(session.get_inputs())
    feeds = match_inputs(specs, evalset)
    fixed = fixed_batch_size(specs)
    report(10, "running the evaluation data")
    try:
        outputs = _judged_outputs(session, model_path, feeds, evalset, task, fixed)
    except OutputsUnusable as exc:
        raise EvaluationError(str(exc)) from None
    if outputs.dtype.kind == "f" and not np.isfinite(outputs).all():
        bad = int(outputs.size - np.count_nonzero(np.isfinite(outputs)))
        raise EvaluationError(f"the model produced {bad} NaN or infinite output values")
    report(40, "scoring")
    found = quality_metrics(task, outputs, evalset.labels, reference_outputs)
    if latency_runs > 0:
        report(50, "timing batch-1 latency")
        found |= _latency(session, feeds, fixed or 1, latency_runs)
    report(70, "timing throughput")
    batch = fixed or throughput_batch
    throughput = _throughput(session, batch_of(feeds, 0, batch), batch)
    found["throughput_per_s"] = Measurement(throughput, "samples/s")
    found["size_bytes"] = Measurement(float(model_size_bytes(model_path)), "bytes")
    if measure_memory:
        report(85, "measuring peak memory in a fresh process")
        with contextlib.suppress(MemoryProbeError):  # left out: a memory budget then excludes the candidate
            found["peak_memory_bytes"] = Measurement(
                float(peak_memory(model_path, batch_of(feeds, 0, batch), device)), "bytes")
    report(100, "evaluated")
    return Evaluation(found, outputs, session_device(session, device))


def memory_feeds(model_path: str | Path, evalset: EvalSet, throughput_batch: int = 32) -> dict[str, np.ndarray]:
    """The batch :func:`evaluate` measures peak memory on (its throughput batch, or the fixed one)."""
    session = make_session(model_path, "cpu", threads=SESSION_THREADS)
    specs = specs_of(session.get_inputs())
    return batch_of(match_inputs(specs, evalset), 0, fixed_batch_size(specs) or throughput_batch)


def _judged_outputs(
    session: ort.InferenceSession,
    model_path: str | Path,
    feeds: dict[str, np.ndarray],
    evalset: EvalSet,
    task: Task,
    fixed: int | None,
) -> np.ndarray:
    """The judged output over every sample (in the model's fixed batches, the padding dropped)."""
    infos = output_infos(session)
    judged = judged_output(task, infos)
    classes = declared_classes(load_proto(model_path))
    check_labels_match(task, judged, classes, evalset.labels)
    count = evalset.num_samples
    outputs = run_batches(session, feeds, count, fixed or EVAL_BATCH, bool(fixed), [judged.name])[0]
    if task == "classification" and judged.is_map:
        keys = map_classes(session, judged, batch_of(feeds, 0, fixed or 1))
        if keys != list(range(len(keys))):  # columns are not the class ids: score the labels themselves
            outputs = np.asarray(keys, dtype=np.int64)[outputs.argmax(axis=1)]
    return outputs


def quality_metrics(
    task: Task, outputs: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None
) -> dict[str, Measurement]:
    """The task's quality and parity metrics for ``outputs`` (see the module docstring)."""
    found: dict[str, Measurement] = {}
    if reference is not None and reference.shape != outputs.shape:
        raise EvaluationError(
            f"outputs {list(outputs.shape)} and reference outputs {list(reference.shape)} differ in shape"
        )
    try:
        if task == "classification":
            if labels is not None:
                found["accuracy"] = Measurement(metrics.accuracy(outputs, labels), "ratio")
            if reference is not None:
                agree = np.mean(metrics.class_ids(outputs) == metrics.class_ids(reference))
                found["top1_agreement"] = Measurement(float(agree), "ratio")
        elif task == "regression" and labels is not None:
            if outputs.size != labels.size:
                raise EvaluationError(f"outputs {list(outputs.shape)} do not match targets {list(labels.shape)}")
            predictions = outputs.reshape(labels.shape)
            found["rmse"] = Measurement(metrics.rmse(predictions, labels), "target")
            found["mae"] = Measurement(metrics.mae(predictions, labels), "target")
        elif task == "embedding":
            found |= _embedding_quality(outputs, labels, reference)
    except ValueError as exc:  # shapes the metric cannot use
        raise EvaluationError(str(exc)) from exc
    if reference is not None and outputs.dtype.kind == "f":
        diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
        found["parity_max_abs_diff"] = Measurement(float(diff.max()), "abs")
    return found


def _embedding_quality(
    outputs: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None
) -> dict[str, Measurement]:
    if outputs.ndim != 2:
        raise EvaluationError(f"an embedding model must output (N, dimensions); got {list(outputs.shape)}")
    found = {}
    target = labels if labels is not None else reference
    if target is not None:
        if target.shape != outputs.shape:
            raise EvaluationError(
                f"embeddings {list(outputs.shape)} and reference embeddings {list(target.shape)} differ in shape"
            )
        cosine = metrics.rowwise_cosine(outputs, target)
        found["cosine_mean"] = Measurement(float(cosine.mean()), "ratio")
        found["cosine_min"] = Measurement(float(cosine.min()), "ratio")
    if reference is not None:
        cosine = metrics.rowwise_cosine(outputs, reference)
        found["parity_cosine_mean"] = Measurement(float(cosine.mean()), "ratio")
        found["parity_cosine_min"] = Measurement(float(cosine.min()), "ratio")
        if len(outputs) > NEIGHBOURS:
            agreement = metrics.topk_agreement(outputs, reference, NEIGHBOURS)
            found[f"top{NEIGHBOURS}_agreement"] = Measurement(agreement, "ratio")
    return found


def _latency(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], batch: int, runs: int
) -> dict[str, Measurement]:
    samples = [batch_of(feeds, i * batch, batch) for i in range(max(runs, 1))]
    warm_up(session, samples[0])
    times = np.array(time_runs(session, samples))
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {
        "latency_p50_ms": Measurement(float(p50), "ms"),
        "latency_p95_ms": Measurement(float(p95), "ms"),
        "latency_p99_ms": Measurement(float(p99), "ms"),
    }


def _throughput(session: ort.InferenceSession, feed: dict[str, np.ndarray], batch: int, runs: int = 3) -> float:
    warm_up(session, feed, 1)
    return batch / (float(np.median(time_runs(session, [feed] * runs))) / 1000)
