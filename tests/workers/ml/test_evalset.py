from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from workers.ml import evalset as evalset_module
from workers.ml.evalset import SINGLE_INPUT, EvalDataError, load_evalset


def write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_named_inputs_labels_and_training_arrays(tmp_path: Path) -> None:
    path = tmp_path / "eval.npz"
    with zipfile.ZipFile(path, "w") as archive:  # names with ':' cannot be savez keywords
        for name, array in {
            "input:input_ids": np.arange(6, dtype=np.int64).reshape(3, 2),
            "input:attention_mask": np.ones((3, 2), dtype=np.int64),
            "labels": np.array([0, 1, 1]),
            "train:inputs": np.zeros((5, 4), dtype=np.float32),
            "train:labels": np.arange(5),
        }.items():
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, array)
    data = load_evalset(path)
    assert sorted(data.inputs) == ["attention_mask", "input_ids"]
    assert data.inputs["input_ids"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert data.labels is not None and data.labels.tolist() == [0, 1, 1]
    assert sorted(data.extra) == ["inputs", "labels"]
    assert data.num_samples == 3


def test_single_unnamed_input_without_labels(tmp_path: Path) -> None:
    data = load_evalset(write(tmp_path / "e.npz", inputs=np.ones((4, 3), np.float32)))
    assert list(data.inputs) == [SINGLE_INPUT]
    assert data.labels is None and data.extra == {}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": np.arange(3)}, "no model inputs"),
        ({"inputs": np.array([1.0, np.nan])}, "array 'inputs' holds 1 NaN or infinite values"),
        ({"inputs": np.ones(2), "labels": np.array([np.inf, 1])}, "'labels' holds 1 NaN"),
        ({"inputs": np.ones(3), "labels": np.arange(2)}, "'labels' has 2 rows but the inputs have 3"),
        ({"inputs": np.array(["a", "b"])}, "only bool, integer and float arrays"),
        ({"inputs": np.float32(1.0)}, "is a scalar"),
        ({"inputs": np.zeros((0, 2))}, "array 'inputs' is empty"),
        ({"inputs": np.ones(2), "weights": np.ones(2)}, "unexpected array 'weights'"),
    ],
)
def test_rejects_unusable_arrays(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(EvalDataError, match=message):
        load_evalset(write(tmp_path / "bad.npz", **arrays))


def test_rejects_inputs_of_different_lengths(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, rows in {"input:a": 3, "input:b": 2}.items():
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, np.zeros((rows, 1)))
    with pytest.raises(EvalDataError, match=r"different numbers of rows \(a: 3, b: 2\)"):
        load_evalset(path)


def test_rejects_pickled_object_arrays_without_unpickling(tmp_path: Path) -> None:
    path = write(tmp_path / "obj.npz", inputs=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(EvalDataError, match="object \\(pickled\\) arrays, which are never loaded"):
        load_evalset(path)


def test_rejects_files_that_are_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(EvalDataError, match=r"'model.npz' is not an \.npz archive"):
        load_evalset(path)
    with pytest.raises(EvalDataError, match="does not exist"):
        load_evalset(tmp_path / "missing.npz")


def test_rejects_archives_over_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "big.npz", inputs=np.zeros((100, 100)))
    monkeypatch.setattr(evalset_module, "MAX_TOTAL_BYTES", 50_000)
    with pytest.raises(EvalDataError, match="GiB uncompressed"):
        load_evalset(path)
    monkeypatch.setattr(evalset_module, "MAX_ARRAYS", 0)
    with pytest.raises(EvalDataError, match="holds 1 arrays; at most 0 allowed"):
        load_evalset(path)
