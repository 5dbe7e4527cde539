"""A Hugging Face decoder folder becomes an ONNX decoder with a KV cache, checked against torch.

The graph is built by onnxruntime-genai's model builder (``python -m onnxruntime_genai.models.builder``)
rather than traced: it writes past/present key-value inputs and outputs, GroupQueryAttention with
rotary embeddings, external data for the weights, and ``genai_config.json`` naming all of it. It was
chosen over Optimum's exporter because optimum-onnx requires transformers < 4.58 (this project runs
5.x) while the builder installs without touching torch or transformers. The builder runs in a child
process (its memory is returned when it ends) with the Hugging Face hub disabled.

Parity with torch (transformers, safetensors only, no remote code) on the prompt set: the largest
absolute difference of the logits at every prompt position, and the greedy continuations, which must
be identical token for token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.llm.decoder import Decoder

PARITY_NEW_TOKENS = 16
PARITY_ATOL = 1e-3
BUILDER_TIMEOUT_S = 3600
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


class ConversionError(ValueError):
    """The decoder could not be converted faithfully; the message says why."""


@dataclass(frozen=True)
class Conversion:
    folder: Path
    parity_max_abs_diff: float
    greedy_identical: float  # share of prompts whose greedy continuation equals torch's
    recipe: dict[str, Any]


def run_builder(hf_folder: Path, out: Path, *, precision: str = "fp32", provider: str = "cpu") -> None:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_folder), "-o", str(out),
               "-p", precision, "-e", provider, "-c", str(out.parent / f"{out.name}-cache"),
               "--extra_options", "hf_token=false"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILDER_TIMEOUT_S, env=env,
                          check=False)
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-1:]
        raise ConversionError(f"the model builder failed: {tail[0][:300] if tail else done.returncode}")
    for name in TOKENIZER_FILES:  # the builder copies what transformers saves again; keep the build's own
        if (hf_folder / name).is_file():
            (out / name).write_bytes((hf_folder / name).read_bytes())


def torch_reference(hf_folder: Path, prompts: Sequence[list[int]], new_tokens: int) -> tuple[list[np.ndarray],
                                                                                              list[list[int]]]:
    """Logits at every prompt position and greedy continuations of the torch model (transformers)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_folder), use_safetensors=True, trust_remote_code=False,
                                                 dtype=torch.float32).eval()
    logits, continuations = [], []
    with torch.no_grad(), _one_thread(torch):
        for ids in prompts:
            tokens = torch.tensor([ids])
            logits.append(model(tokens).logits[0].numpy())
            out = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
            continuations.append(out[0, len(ids):].tolist())
    return logits, continuations


@contextmanager
def _one_thread(torch: Any) -> Iterator[None]:
    """Torch on one thread: worker processes share the cores, and on a busy machine two threads spin
    against each other (about 10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def convert(hf_folder: Path, out: Path, prompts: Sequence[list[int]], *, atol: float = PARITY_ATOL) -> Conversion:
    """Build ``out`` (an ONNX decoder folder) from ``hf_folder`` and check it against torch."""
    run_builder(hf_folder, out)
    reference_logits, reference_tokens = torch_reference(hf_folder, prompts, PARITY_NEW_TOKENS)
    decoder = Decoder(out, threads=1)
    worst = 0.0
    same = 0
    for ids, expected_logits, expected in zip(prompts, reference_logits, reference_tokens, strict=True):
        worst = max(worst, float(np.abs(decoder.logits(ids) - expected_logits).max()))
        same += list(decoder.generate(ids, len(expected), stop_at_eos=False)) == expected
    if worst > atol:
        raise ConversionError(f"the ONNX decoder's logits differ from torch's by {worst:.3g} (limit {atol:g})")
    if same < len(prompts):
        raise ConversionError(f"greedy continuations differ from torch's on {len(prompts) - same} of "
                              f"{len(prompts)} prompts")
    recipe = {"source": "hf-tar", "exporter": "onnxruntime-genai model builder", "precision": "fp32",
              "kv_cache": True, "parity_max_abs_diff": worst, "parity_prompts": len(prompts),
              "greedy_identical": same / len(prompts)}
    return Conversion(out, worst, same / len(prompts), recipe)
