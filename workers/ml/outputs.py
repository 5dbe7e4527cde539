"""Reading a model's outputs as arrays: ONNX-ML maps, fixed batch sizes, and the output judged.

scikit-learn pipelines converted by skl2onnx (and LightGBM / XGBoost through onnxmltools) answer
with a label tensor plus the class probabilities as a sequence of maps (``ZipMap``), often with a
fixed batch dimension. This module turns such answers into plain arrays:

* a ``seq(map(int64, float))`` output becomes an (N, classes) float array, columns in the order
  of the model's class labels;
* :func:`run_batches` feeds any number of samples to a model with a fixed batch size, padding the
  last batch by repeating its last sample and dropping the padding's rows from every output;
* :func:`judged_output` picks the output that is scored: for classification the predicted labels
  when the model has a label output, else its class scores; for other tasks the first output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from workers.ml.runtime import ORT_TO_NUMPY

Feeds = dict[str, np.ndarray]
MAP_TYPES = ("seq(map(int64,tensor(float)))", "seq(map(int64,tensor(double)))")
STRING_MAP_TYPES = ("seq(map(string,tensor(float)))", "seq(map(string,tensor(double)))")
# ONNX-ML classifier operators and the attributes holding their class labels
_CLASS_ATTRIBUTES = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")


class OutputsUnusable(ValueError):
    """The model's outputs cannot be read or matched to the evaluation data; the message says why."""


@dataclass(frozen=True)
class OutputInfo:
    name: str
    type: str  # ONNX Runtime's type text, e.g. "tensor(float)" or "seq(map(int64,tensor(float)))"

    @property
    def is_tensor(self) -> bool:
        return self.type in ORT_TO_NUMPY

    @property
    def is_map(self) -> bool:
        return self.type in MAP_TYPES


def output_infos(session: ort.InferenceSession) -> list[OutputInfo]:
    """The session's outputs; raise :class:`OutputsUnusable` for none, or for types no metric can read."""
    infos = [OutputInfo(node.name, node.type) for node in session.get_outputs()]
    if not infos:
        raise OutputsUnusable("the model has no outputs")
    for info in infos:
        if info.type in STRING_MAP_TYPES or info.type == "tensor(string)":
            continue  # readable, but not comparable with numeric labels: judged_output says so if it matters
        if not (info.is_tensor or info.is_map):
            raise OutputsUnusable(f"output {info.name!r} has type {info.type}, which Slipway cannot read")
    return infos


def as_array(info: OutputInfo, value: object) -> np.ndarray:
    """One output value as an array: tensors as they are, a sequence of maps as (N, classes)."""
    if not isinstance(value, list):
        return np.asarray(value)
    if not value:
        return np.zeros((0, 0), np.float32)
    keys = list(value[0])
    if any(list(row) != keys for row in value):
        raise OutputsUnusable(f"output {info.name!r}: the rows' maps do not all have the same class labels")
    return np.array([[row[key] for key in keys] for row in value], dtype=np.float32)


def map_classes(session: ort.InferenceSession, info: OutputInfo, feeds: Feeds) -> list[object]:
    """The class labels (map keys) of a map output, read from one run."""
    value = session.run([info.name], feeds)[0]
    return list(value[0]) if isinstance(value, list) and value else []


def run_batches(
    session: ort.InferenceSession, feeds: Feeds, count: int, batch: int, fixed: bool, names: Sequence[str]
) -> list[np.ndarray]:
    """Outputs ``names`` over all ``count`` samples, ``batch`` at a time, as arrays.

    With a ``fixed`` batch size a short last batch is padded by repeating its last sample and the
    padding's rows are dropped; an output whose rows do not follow the batch raises
    :class:`OutputsUnusable`.
    """
    infos = {node.name: OutputInfo(node.name, node.type) for node in session.get_outputs()}
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, count, batch):
        real = min(batch, count - start)
        index = np.minimum(np.arange(start, start + (batch if fixed else real)), count - 1)
        values = session.run(list(names), {name: array[index] for name, array in feeds.items()})
        for slot, (name, value) in enumerate(zip(names, values, strict=True)):
            array = as_array(infos[name], value)
            if array.ndim == 0 or len(array) != len(index):
                raise OutputsUnusable(
                    f"output {name!r} has shape {list(array.shape)} for a batch of {len(index)} samples: "
                    "its rows cannot be matched to the samples"
                )
            parts[slot].append(array[:real])
    return [np.concatenate(chunks) for chunks in parts]


def declared_classes(model: onnx.ModelProto) -> list[object] | None:
    """The class labels an ONNX-ML classifier declares (ints or strings), or None."""
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                if values:
                    return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def judged_output(task: str, infos: list[OutputInfo]) -> OutputInfo:
    """The output scored for ``task`` (see the module docstring)."""
    if task == "classification":
        for info in infos:
            if info.type in ("tensor(int64)", "tensor(int32)", "tensor(string)"):
                return info
        for info in infos:
            if info.is_map or info.type in STRING_MAP_TYPES or info.type.startswith("tensor(float"):
                return info
    return infos[0]


def check_labels_match(
    task: str, judged: OutputInfo, classes: list[object] | None, labels: np.ndarray | None
) -> None:
    """Raise :class:`OutputsUnusable` when the judged output cannot be compared with ``labels``."""
    if task != "classification" or labels is None:
        return
    if judged.type == "tensor(string)" or judged.type in STRING_MAP_TYPES or (
        classes and any(isinstance(c, str) for c in classes)
    ):
        shown = ", ".join(map(str, (classes or [])[:10]))
        raise OutputsUnusable(
            f"the model's classes are text ({shown or judged.type}) but the evaluation labels are numbers: "
            "its outputs cannot be matched to the labels (label the evaluation data with the class index "
            "or convert the model with integer classes)"
        )
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise OutputsUnusable("classification labels must be whole numbers (class ids)")
    if classes:
        unknown = sorted(set(np.unique(labels).astype(np.int64).tolist()) - set(classes))
        if unknown:
            raise OutputsUnusable(
                f"the evaluation labels {unknown[:10]} are not among the model's classes {classes[:20]}: "
                "its outputs cannot be matched to the labels"
            )
