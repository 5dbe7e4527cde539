from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.workers.ml.onnx_builders import mlp_graph
from workers.ml.evalset import EvalSet
from workers.ml.timing import MIN_ROUNDS, fit_budget, ratio_interval, time_interleaved

ROUND_MEDIANS = np.array([10.0, 11.0, 9.0, 10.5, 12.0, 10.0, 9.5, 10.2, 11.1, 9.8])


def test_the_ratio_interval_is_exact_for_a_constant_factor_and_repeatable() -> None:
    doubled = ratio_interval(ROUND_MEDIANS * 2, ROUND_MEDIANS)
    assert (doubled.ratio, doubled.low, doubled.high) == (2.0, 2.0, 2.0)
    assert doubled.slower and not doubled.faster
    assert doubled.text() == "x2.00 (2.00 to 2.00)"
    assert ratio_interval(ROUND_MEDIANS[::-1], ROUND_MEDIANS) == ratio_interval(ROUND_MEDIANS[::-1], ROUND_MEDIANS)


def test_round_to_round_noise_gives_an_interval_that_straddles_one() -> None:
    shuffled = ratio_interval(np.roll(ROUND_MEDIANS, 3), ROUND_MEDIANS)
    assert shuffled.low < 1 < shuffled.high
    assert not shuffled.faster and not shuffled.slower
    with pytest.raises(ValueError, match="paired round figures"):
        ratio_interval(ROUND_MEDIANS[:1], ROUND_MEDIANS[:1])


def test_the_budget_takes_runs_per_round_first_and_keeps_a_minimum_of_rounds() -> None:
    assert fit_budget(0.001, 15, 3, 20.0) == (15, 3)
    assert fit_budget(0.2, 15, 3, 20.0) == (15, 3)
    assert fit_budget(0.5, 15, 3, 20.0) == (15, 2)
    assert fit_budget(5.0, 15, 3, 20.0) == (MIN_ROUNDS, 1)


def test_a_model_many_times_heavier_is_measurably_slower(tmp_path: Path) -> None:
    def saved(width: int) -> Path:
        rng = np.random.default_rng(0)
        graph = mlp_graph([rng.normal(size=(64, width)).astype(np.float32),
                           rng.normal(size=(width, width)).astype(np.float32),
                           rng.normal(size=(width, 10)).astype(np.float32)],
                          [np.zeros(width, np.float32), np.zeros(width, np.float32), np.zeros(10, np.float32)])
        path = tmp_path / f"mlp{width}.onnx"
        onnx.save(onnx.helper.make_model(graph), str(path))
        return path

    data = EvalSet({"": np.random.default_rng(1).normal(size=(20, 64)).astype(np.float32)})
    timing = time_interleaved([saved(16), saved(1024)], data, rounds=10, runs_per_round=2)
    assert timing.rounds.shape == (2, 10)
    assert [len(runs) for runs in timing.runs] == [20, 20]
    assert ratio_interval(timing.rounds[1], timing.rounds[0]).slower  # ~1M multiply-adds against ~1.2k
