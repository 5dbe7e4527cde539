from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.workers.ml.onnx_builders import save_model
from workers.ml.padding import trim_trailing_padding
from workers.ml.runtime import make_session


def sequence_length_model(tmp_path: Path) -> Path:
    """Outputs the sequence length it sees, to observe the trimming."""
    g = helper.make_graph(
        [helper.make_node("Shape", ["ids"], ["shape"]), helper.make_node("Identity", ["mask"], ["mask_out"])],
        "seq",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("ids", "mask")],
        [
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("mask_out", TensorProto.INT64, ["b", "s"]),
        ],
    )
    model = onnx.load(str(save_model(g, tmp_path / "seq.onnx")))
    trim_trailing_padding(model, "mask", ["ids", "mask"])
    onnx.save(model, str(tmp_path / "trimmed.onnx"))
    return tmp_path / "trimmed.onnx"


def test_trailing_padding_is_cut_to_the_longest_row(tmp_path: Path) -> None:
    session = make_session(sequence_length_model(tmp_path))
    mask = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    shape, mask_out = session.run(None, {"ids": mask * 7, "mask": mask})
    assert shape.tolist() == [2, 3]
    assert mask_out.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_left_padding_and_empty_masks_keep_a_valid_shape(tmp_path: Path) -> None:
    session = make_session(sequence_length_model(tmp_path))
    left = np.array([[0, 0, 1, 1]])
    assert session.run(None, {"ids": left, "mask": left})[0].tolist() == [1, 4]
    empty = np.zeros((1, 4), np.int64)
    assert session.run(None, {"ids": empty, "mask": empty})[0].tolist() == [1, 1]
