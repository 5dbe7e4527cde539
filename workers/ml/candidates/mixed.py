"""int8-mixed: accuracy-aware int8 that keeps the most sensitive layers' arithmetic in fp32.

1. Plan each layer: on activations captured from the evaluation data, simulate ONNX Runtime's
   int8 arithmetic (:mod:`simulate`) and pick, per layer, activation smoothing (SmoothQuant
   alpha 0, 0.5 or 0.75). MatMuls and fused attention run ONNX Runtime's dynamic quantization:
   one activation scale per tensor, signed weights per output channel, i.e. its uint8 x int8
   kernels, the fast ones on AVX2 CPUs. Those kernels can saturate on CPUs without VNNI; step 3
   measures the real model, so any saturation counts against the budget like any other error.
   (uint8 x uint8 kernels, and one activation scale per token built from plain operators, were
   measured slower on such a CPU than fp32 arithmetic: a layer int8 cannot carry keeps fp32
   arithmetic instead.) Fused embeddings get one scale per row of the word table
   (:func:`rewrite.quantize_embedding_rows`).
2. Sensitivity: build the model with only that layer quantized and measure how far its outputs
   move from the fp32 outputs on the evaluation data (relative squared error).
3. Search: layers sorted most sensitive first; binary search for the smallest number k of
   leading layers to keep in fp32 arithmetic, with fp32 activations and their weights stored
   int8 (:func:`rewrite.store_weights_int8`: same size as int8, only weight rounding error),
   such that the model stays inside the accuracy budget (policy), measured with the task metric
   on the evaluation data. Each kept layer runs fp32 arithmetic instead of int8, so the smallest
   k is the fastest mix inside the budget.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from workers.ml.candidates import graph, rewrite, simulate
from workers.ml.candidates.graph import Layer
from workers.ml.candidates.quantize import dynamic_int8, prepared
from workers.ml.evaluate import EVAL_BATCH, quality_metrics
from workers.ml.policy import BuildContext, budget_violation

INT8 = "int8"  # int8 weights and activations
WEIGHTS_ONLY = "int8-weights"  # int8 weights, fp32 activations and arithmetic
CAPTURE_ROWS = 1024
SENSITIVITY_SAMPLES = 16  # per-layer probes only rank layers: a few samples are enough


class NoMixInBudget(RuntimeError):
    """Even the mix with the fewest int8 layers is outside the accuracy budget."""


@dataclass(frozen=True)
class LayerPlan:
    layer: Layer
    scheme: str  # "tensor": one activation scale per tensor; "row": embedding rows
    alpha: float  # smoothing strength, 0 for none
    smoothing: np.ndarray | None  # per input channel divisors
    simulated_error: float | None


def int8_mixed(source: Path, out: Path, ctx: BuildContext) -> dict[str, Any]:
    # In the evaluation's batches: one activation scale per tensor depends on what else is in the
    # batch, so the budget is checked on the batches the evaluate stage will measure.
    feeds = graph.calibration_feeds(source, ctx.evalset, ctx.policy.calibration_samples, EVAL_BATCH,
                                    whole_batches=False)
    count = sum(graph.samples_in(feed) for feed in feeds)
    labels = None if ctx.evalset.labels is None else ctx.evalset.labels[:count]
    base = prepared(source)
    layers = graph.find_layers(base)
    if not layers:
        raise ValueError("the model has no MatMul, Gemm or attention layer with constant weights")
    reference = graph.run_outputs(source, feeds)
    original = quality_metrics(ctx.task, reference, labels, None)
    ctx.progress(5, f"planning {len(layers)} layers on {count} samples")
    plans = plan_layers(base, layers, feeds)
    probe_feeds = feeds[: max(1, SENSITIVITY_SAMPLES // graph.samples_in(feeds[0]))]
    probe_reference = reference[: sum(graph.samples_in(feed) for feed in probe_feeds)]
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "probe.onnx"
        sensitivity = {}
        for index, plan in enumerate(plans):
            build(base, plans, {plan.layer.name: INT8}, probe)
            outputs = graph.run_outputs(probe, probe_feeds)
            sensitivity[plan.layer.name] = distortion(outputs, probe_reference)
            ctx.progress(20 + 50 * (index + 1) / len(plans), f"sensitivity of {plan.layer.name}")
        order = sorted(plans, key=lambda p: sensitivity[p.layer.name], reverse=True)
        trials: dict[int, str | None] = {}

        def inside(kept: int) -> bool:
            build(base, plans, _mix(order, kept), probe)
            metrics = quality_metrics(ctx.task, graph.run_outputs(probe, feeds), labels, reference)
            trials[kept] = budget_violation(ctx.task, original, metrics, ctx.policy)
            ctx.progress(min(95, 72 + 4 * len(trials)), f"trying {kept} layers with fp32 arithmetic")
            return trials[kept] is None

        kept = _smallest_inside(len(plans), inside)
        if kept is None:
            raise NoMixInBudget(f"even with int8 weights only: {trials[len(plans)]}")
    build(base, plans, _mix(order, kept), out)
    weights_only = {p.layer.name for p in order[:kept]}
    return {
        "calibration_samples": count,
        "fp32_arithmetic_layers": [p.layer.name for p in order[:kept]],
        "int8_layers": {
            p.layer.name: {
                "activations": f"per {p.scheme}",
                "smoothing_alpha": p.alpha,
                "simulated_error": None if p.simulated_error is None else round(p.simulated_error, 5),
            }
            for p in plans
            if p.layer.name not in weights_only
        },
        "sensitivity": {name: round(value, 8) for name, value in sensitivity.items()},
        "search": {str(k): reason or "inside budget" for k, reason in sorted(trials.items())},
    }


def plan_layers(model: onnx.ModelProto, layers: list[Layer], feeds: list[dict[str, np.ndarray]]) -> list[LayerPlan]:
    tensors = sorted({layer.activation for layer in layers if layer.activation})
    captured = graph.capture(model, tensors, feeds, CAPTURE_ROWS) if tensors else {}
    plans = []
    for layer in layers:
        if layer.kind == "embedding":
            plans.append(LayerPlan(layer, "row", 0.0, None, None))
            continue
        x = captured[layer.activation].astype(np.float32)
        w = graph.weight_matrix(model, layer).astype(np.float32)
        shared = graph.use_count(model, layer.weight) > 1  # a shared weight cannot absorb one layer's scales
        alpha, error = simulate.best_smoothing(x, w, (0.0,) if shared else simulate.SMOOTHING_ALPHAS)
        scales = simulate.smoothing_scales(x, w, alpha) if alpha else None
        plans.append(LayerPlan(layer, "tensor", alpha, scales, error))
    return plans


def build(base: onnx.ModelProto, plans: list[LayerPlan], precision: dict[str, str], out: Path) -> Path:
    """Write ``base`` with each layer named in ``precision`` as planned for INT8 or stored
    WEIGHTS_ONLY; layers not named stay fp32."""
    model = onnx.ModelProto()
    model.CopyFrom(base)
    for plan in plans:
        if precision.get(plan.layer.name) == WEIGHTS_ONLY and plan.scheme != "row":
            rewrite.store_weights_int8(model, plan.layer)
    chosen = [
        plan
        for plan in plans
        if precision.get(plan.layer.name) == INT8 or (plan.scheme == "row" and plan.layer.name in precision)
    ]
    for plan in chosen:
        if plan.smoothing is not None:
            rewrite.smooth(model, plan.layer, plan.smoothing)
    for plan in chosen:
        if plan.scheme == "row":
            rewrite.quantize_embedding_rows(model, plan.layer)
    per_tensor = [plan.layer.name for plan in chosen if plan.scheme == "tensor"]
    if per_tensor:
        dynamic_int8(model, out, per_tensor)
    else:
        graph.save(model, out)
    return out


def distortion(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Squared error relative to the reference's energy, over all outputs."""
    diff = outputs.astype(np.float64) - reference.astype(np.float64)
    return float(np.sum(diff**2) / max(np.sum(reference.astype(np.float64) ** 2), 1e-30))


def _mix(order: list[LayerPlan], kept: int) -> dict[str, str]:
    """The ``kept`` most sensitive layers with int8 weights only, the others fully int8."""
    return {plan.layer.name: WEIGHTS_ONLY if i < kept else INT8 for i, plan in enumerate(order)}


def _smallest_inside(highest: int, inside: Callable[[int], bool]) -> int | None:
    """Smallest k in [0, highest] with inside(k), assuming keeping more layers never hurts."""
    if inside(0):
        return 0
    if not inside(highest):
        return None
    low, high = 0, highest  # inside(high) holds, inside(low) does not
    while high - low > 1:
        middle = (low + high) // 2
        if inside(middle):
            high = middle
        else:
            low = middle
    return high
