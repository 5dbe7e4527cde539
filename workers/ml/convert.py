"""Intake: turn a build's model file into a checked, optimised fp32 ONNX model.

* ``.onnx`` passes through unchanged.
* ``.pt2`` (torch.export archive) is loaded safely (:mod:`workers.ml.pt2`) and exported.
* ``.safetensors`` weights are loaded into a registered architecture
  (:mod:`workers.ml.architectures`) built from the build's config, then exported.

Export uses the dynamo exporter (one file, no external data), except for architectures that ask
for the TorchScript exporter at opset 17 (BERT: only its graph gets ONNX Runtime's attention
fusion). The export is checked against torch on the evaluation data, then optimised offline:
the ONNX Runtime transformer optimizer for transformer architectures, otherwise ONNX Runtime's
basic graph optimisations (constant folding, redundant-node removal, MatMul+Add fusion), which
are portable across hardware. Architectures with pooled outputs over a masked sequence also
skip trailing padding inside the graph (:mod:`workers.ml.padding`). Parity with torch is
checked again, on padded inputs, on the final file.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from workers.ml.architectures import Architecture, Config, build_module, get_architecture
from workers.ml.evalset import SINGLE_INPUT, EvalSet
from workers.ml.evaluate import Progress
from workers.ml.padding import trim_trailing_padding
from workers.ml.pt2 import load_exported_program
from workers.ml.runtime import make_session

PARITY_SAMPLES = 8
LEGACY_OPSET = 17


class ConversionError(ValueError):
    """The model could not be converted faithfully; the message says why."""


@dataclass(frozen=True)
class Conversion:
    path: Path
    source_format: str  # "onnx", "torch-export" or "safetensors"
    parity_max_abs_diff: float | None  # torch vs the final ONNX file, None for ONNX input
    recipe: dict[str, Any]


def convert_to_onnx(
    source: str | Path,
    out_dir: str | Path,
    evalset: EvalSet,
    *,
    architecture: str | None = None,
    config: Config | None = None,
    parity_atol: float = 1e-4,
    progress: Progress | None = None,
) -> Conversion:
    """Convert ``source`` into ``out_dir/model.onnx`` (see the module docstring)."""
    source, out_dir = Path(source), Path(out_dir)
    report = progress or (lambda percent, step: None)
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        report(100, "ONNX model passed through")
        return Conversion(source, "onnx", None, {"source": "onnx"})
    out_dir.mkdir(parents=True, exist_ok=True)
    report(5, "loading the torch model")
    if suffix == ".pt2":
        program = load_exported_program(source)
        module: torch.nn.Module = program.module()
        names = _user_input_names(program)
        arch = None
        source_format = "torch-export"
    elif suffix == ".safetensors":
        if architecture is None:
            raise ConversionError("safetensors weights need an architecture name in the build metadata")
        arch = get_architecture(architecture)
        module = build_module(architecture, config or {}, load_file(str(source)))
        names = None
        source_format = "safetensors"
    else:
        raise ConversionError(f"unsupported model format {suffix or source.name!r}: use .onnx, .pt2 or .safetensors")
    path = out_dir / "model.onnx"
    recipe = export_module(module, arch, config or {}, evalset, path, names, parity_atol, report)
    return Conversion(path, source_format, recipe["parity_max_abs_diff"], {"source": source_format} | recipe)


def export_module(
    module: torch.nn.Module,
    arch: Architecture | None,
    config: Config,
    evalset: EvalSet,
    path: Path,
    input_names: list[str] | None = None,
    parity_atol: float = 1e-4,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export ``module`` to ``path``, check parity, optimise; return the recipe with the parity."""
    report = progress or (lambda percent, step: None)
    names, inputs = _example_inputs(arch, evalset, input_names)
    sample = {n: a[:PARITY_SAMPLES] for n, a in inputs.items()}
    try:
        with torch.no_grad():
            expected = module(*(torch.from_numpy(a) for a in sample.values())).numpy()
    except Exception as exc:  # guards of exported programs raise AssertionError, others vary
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConversionError(
            f"the torch model fails on {len(next(iter(sample.values())))} evaluation samples ({line}); "
            "export it with a dynamic batch dimension"
        ) from exc
    report(20, "exporting to ONNX")
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "exported.onnx"
        _export(module, arch, sample, raw)
        first = _parity(raw, sample, expected)
        if first > parity_atol:
            raise ConversionError(f"the exported model differs from torch by {first:.3g} (limit {parity_atol:g})")
        report(60, "optimising the graph")
        optimiser = _optimise(raw, path, arch, config)
        trimmed = _trim_padding(path, arch, names)
    final = _parity(path, sample, expected)
    if final > parity_atol:
        raise ConversionError(f"the optimised model differs from torch by {final:.3g} (limit {parity_atol:g})")
    report(100, "converted")
    exporter = "torchscript" if arch is not None and arch.legacy_export else "dynamo"
    return {
        "exporter": exporter,
        "optimizer": optimiser,
        "trims_padding": trimmed,
        "parity_max_abs_diff": final,
        "inputs": names,
    }


def _example_inputs(
    arch: Architecture | None, evalset: EvalSet, input_names: list[str] | None
) -> tuple[list[str], dict[str, np.ndarray]]:
    data = dict(evalset.inputs)
    if arch is not None:
        order = list(arch.input_names)
        present = [n for n in order if n in data]
        if SINGLE_INPUT in data and len(order) >= 1:
            data = {order[0]: data[SINGLE_INPUT]}
            present = [order[0]]
        if present != order[: len(present)] or len(present) < arch.required_inputs:
            raise ConversionError(
                f"the evaluation data must give the inputs {', '.join(order[: arch.required_inputs])} "
                f"(optionally followed by {', '.join(order[arch.required_inputs :]) or 'nothing'})"
            )
        return present, {n: data[n] for n in present}
    names = input_names or []
    if SINGLE_INPUT in data and len(names) == 1:
        data = {names[0]: data[SINGLE_INPUT]}
    missing = [n for n in names if n not in data]
    if missing:
        raise ConversionError(f"the evaluation data lacks the model inputs {', '.join(missing)}")
    return names, {n: data[n] for n in names}


def _user_input_names(program: torch.export.ExportedProgram) -> list[str]:
    return [
        spec.arg.name
        for spec in program.graph_signature.input_specs
        if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT
    ]


def _export(module: torch.nn.Module, arch: Architecture | None, sample: Mapping[str, np.ndarray], path: Path) -> None:
    args = tuple(torch.from_numpy(a) for a in sample.values())
    names = list(sample)
    outputs = list(arch.output_names) if arch is not None else ["output"]
    axes = {n: {0: "batch", 1: "sequence"} if arch and arch.sequence_inputs else {0: "batch"} for n in names}
    axes |= {n: {0: "batch"} for n in outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch is not None and arch.legacy_export:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=LEGACY_OPSET,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        else:
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                external_data=False,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
                verbose=False,
            )


def _optimise(raw: Path, path: Path, arch: Architecture | None, config: Config) -> str:
    if arch is not None and arch.transformer_optimizer is not None:
        from onnxruntime.transformers.optimizer import optimize_model

        optimised = optimize_model(str(raw), **arch.transformer_optimizer(config))
        optimised.save_model_to_file(str(path))
        return "onnxruntime-transformers"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.log_severity_level = 3
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    if not path.is_file():
        shutil.copyfile(raw, path)
        return "none"
    return "onnxruntime-basic"


def _trim_padding(path: Path, arch: Architecture | None, names: list[str]) -> bool:
    if arch is None or arch.trim_padding_mask not in names:
        return False
    model = onnx.load(str(path))
    trim_trailing_padding(model, arch.trim_padding_mask, names)
    onnx.save(model, str(path))
    return True


def _parity(path: Path, sample: Mapping[str, np.ndarray], expected: np.ndarray) -> float:
    session = make_session(path, "cpu")
    wanted = {i.name for i in session.get_inputs()}
    actual = session.run(None, {n: a for n, a in sample.items() if n in wanted})[0]
    if actual.shape != expected.shape:
        raise ConversionError(f"the ONNX output shape {list(actual.shape)} differs from torch's {list(expected.shape)}")
    return float(np.max(np.abs(actual.astype(np.float64) - expected)))
