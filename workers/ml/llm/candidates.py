"""Weight-only candidates of an ONNX decoder, made with ONNX Runtime's MatMulNBits quantizer.

Kinds (name: recipe):

* ``int4-rtn-b32`` / ``int4-rtn-b128``: round-to-nearest, symmetric, blocks of 32 / 128 weights;
* ``int4-hqq-b32`` / ``int4-hqq-b128``: Half-Quadratic Quantization (no calibration data);
* ``int4-gptq-b128``: GPTQ, calibrated on the prompt set (prefill of each prompt);
* ``int8-b32``: 8-bit weights, blocks of 32;
* ``fp16``: half-precision weights and cache, rebuilt from the Hugging Face folder by the model
  builder for CUDA; not applicable on the CPU (ONNX Runtime's CPU kernels for it are slower than
  fp32 and GroupQueryAttention in fp16 runs on CUDA only).

Every MatMul with a constant weight is quantized (the attention projections, the MLP and the
LM head); the embedding table stays fp32. Activations stay in float (``accuracy_level`` 4 lets the
CPU kernel quantize them to int8 on the fly, the fast path on AVX2).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from serving.llm.decoder import DecoderConfig

EXTERNAL_DATA_OVER = 1_800_000_000  # bytes of weights: keep below protobuf's 2 GB limit
ACCURACY_LEVEL = 4
KINDS = ("int4-rtn-b32", "int4-rtn-b128", "int4-hqq-b32", "int4-hqq-b128", "int4-gptq-b128", "int8-b32", "fp16")

class NotApplicable(Exception):
    """The candidate does not apply here; the message says why."""

@dataclass(frozen=True)
class Recipe:
    bits: int
    algorithm: str  # rtn, hqq, gptq
    block_size: int

    @property
    def embedding(self) -> bool:
        """int4 RTN also quantizes the token embedding (GatherBlockQuantized): on a 32k vocabulary it is a
        quarter of the weights. ONNX Runtime's GPTQ and HQQ passes handle MatMul only."""
        return self.bits == 4 and self.algorithm == "rtn"

    def describe(self) -> dict[str, Any]:
        quantized = "every MatMul with a constant weight (attention, MLP, LM head)"
        return {"method": "MatMulNBits weight-only", "bits": self.bits, "algorithm": self.algorithm,
                "block_size": self.block_size, "symmetric": True, "accuracy_level": ACCURACY_LEVEL,
                "quantized": quantized + (" and the token embedding" if self.embedding else "")}

def recipe_of(kind: str) -> Recipe:
    bits, algorithm, block = kind.split("-") if kind.startswith("int4") else ("int8", "rtn", kind.split("-")[1])
    return Recipe(int(bits[3:]), algorithm, int(block[1:]))

def quantize(kind: str, source: Path, out: Path, *, prompts: list[list[int]], device: str = "cpu",
             hf_folder: Path | None = None) -> dict[str, Any]:
    """Write the ``kind`` candidate of the decoder folder ``source`` into the folder ``out``; its recipe."""
    if kind == "fp16":
        return fp16(hf_folder, out, device)
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        GPTQWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    recipe = recipe_of(kind)
    config = DecoderConfig.load(source)
    ops: tuple[str, ...] = ("MatMul", "Gather") if recipe.embedding else ("MatMul",)
    axes = (("MatMul", 0), ("Gather", 1))
    algo = None
    if recipe.embedding:
        algo = DefaultWeightOnlyQuantConfig(block_size=recipe.block_size, is_symmetric=True,
                                            accuracy_level=ACCURACY_LEVEL, op_types_to_quantize=ops, quant_axes=axes)
    elif recipe.algorithm == "hqq":
        algo = HQQWeightOnlyQuantConfig(block_size=recipe.block_size, bits=recipe.bits)
    elif recipe.algorithm == "gptq":
        algo = GPTQWeightOnlyQuantConfig(calibration_data_reader=_calibration(config, prompts),
                                         block_size=recipe.block_size, perchannel=False)
    model_path = source / config.filename
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(model_path)),  # weights in memory: GPTQ serialises the graph to calibrate
        bits=recipe.bits, block_size=recipe.block_size, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
        op_types_to_quantize=ops, quant_axes=axes, algo_config=algo)
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    _copy_companions(source, out, config.filename)
    model = quantizer.model.model
    save(model, out / config.filename)
    return recipe.describe()

def save(model: onnx.ModelProto, path: Path) -> None:
    """Save a decoder, its weights as external data beside it when they pass protobuf's limit."""
    external = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_OVER
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data")

def fp16(hf_folder: Path | None, out: Path, device: str) -> dict[str, Any]:
    if not device.startswith("cuda"):
        raise NotApplicable("fp16 is for GPU targets: on the CPU ONNX Runtime runs fp16 decoders slower than "
                            "fp32 (casts around every kernel) and its fp16 attention is CUDA-only")
    if hf_folder is None:
        raise NotApplicable("the Hugging Face folder is not available to rebuild in fp16")
    from workers.ml.llm.convert import run_builder

    run_builder(hf_folder, out, precision="fp16", provider="cuda")
    return {"method": "model builder", "precision": "fp16", "execution_provider": "cuda"}

def _copy_companions(source: Path, out: Path, model_file: str) -> None:
    for path in source.iterdir():
        if path.is_file() and path.name not in (model_file, f"{model_file}.data") and not path.name.startswith("."):
            shutil.copy2(path, out / path.name)

def _calibration(config: DecoderConfig, prompts: list[list[int]]):  # noqa: ANN202 - a CalibrationDataReader
    """GPTQ's calibration data: the prefill of each prompt with an empty cache."""
    from onnxruntime.quantization import CalibrationDataReader

    empty = np.zeros((1, config.kv_heads, 0, config.head_size), dtype=np.float32)
    feeds = [{config.input_ids: np.asarray([ids], dtype=np.int64),
              config.attention_mask: np.ones((1, len(ids)), dtype=np.int64)} | dict.fromkeys(config.past_names, empty)
             for ids in prompts if ids]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()
