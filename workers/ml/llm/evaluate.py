"""Measure one ONNX decoder folder: quality on held-out text and prompts, fidelity to the fp32 model, speed.

Metric names and units (``Measurement(value, unit)``):

* ``perplexity`` (ppl) on the held-out text; ``completion_match`` (ratio): share of prompts whose
  greedy continuation starts with their expected completion (prompts that give one);
* with the fp32 model's results as reference: ``kl_to_fp32`` (nats, mean next-token KL divergence
  over every prompt position), ``greedy_exact_match`` (ratio) and ``greedy_first_divergence``
  (tokens, mean position of the first differing token);
* ``size_bytes`` (the ONNX model and its external data), ``peak_memory_bytes`` (loading the decoder
  and the prefill of the longest prompt, in a fresh process: :mod:`workers.ml.memory`).

Speed is measured for all decoders of a release together, interleaved (:mod:`workers.ml.llm.timing`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.llm.decoder import Decoder
from serving.llm.text import Text
from workers.ml.evaluate import Measurement
from workers.ml.llm import quality
from workers.ml.memory import MemoryProbeError, peak_memory

Progress = Callable[[float, str], None]
DEFAULT_NEW_TOKENS = 16
MAX_NEW_TOKENS = 32
SESSION_THREADS = 1


@dataclass(frozen=True)
class TokenisedEvalSet:
    texts: list[list[int]]
    prompts: list[list[int]]
    completions: list[list[int] | None]

    def new_tokens(self, index: int) -> int:
        expected = self.completions[index]
        return min(len(expected), MAX_NEW_TOKENS) if expected else DEFAULT_NEW_TOKENS


def tokenise(folder: Path, texts: list[str], prompts: list[tuple[str, str | None]]) -> TokenisedEvalSet:
    """Held-out texts and (prompt, expected completion) pairs as token ids of the model's tokenizer."""
    text = Text(folder)
    return TokenisedEvalSet([text.encode(t) for t in texts], [text.encode(p) for p, _ in prompts],
                            [text.encode(c) if c else None for _, c in prompts])


@dataclass(frozen=True)
class Reference:
    logits: list[np.ndarray]
    continuations: list[list[int]]


@dataclass(frozen=True)
class LanguageEvaluation:
    metrics: dict[str, Measurement]
    reference: Reference  # this model's own results, the reference for its candidates


def model_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith("model.onnx"))


def evaluate_decoder(folder: Path, data: TokenisedEvalSet, *, reference: Reference | None = None,
                     device: str = "cpu", progress: Progress | None = None) -> LanguageEvaluation:
    report = progress or (lambda percent, step: None)
    report(0, "loading the decoder")
    decoder = Decoder(folder, threads=SESSION_THREADS, device=device)
    report(10, "perplexity on the held-out text")
    found = {"perplexity": Measurement(quality.perplexity(decoder, data.texts), "ppl")}
    report(35, "greedy continuations of the prompts")
    logits = [decoder.logits(ids) for ids in data.prompts]
    continuations = [list(decoder.generate(ids, data.new_tokens(i), stop_at_eos=False))
                     for i, ids in enumerate(data.prompts)]
    report(70, "peak memory in a fresh process")
    longest = max(data.prompts, key=len)
    try:
        memory = peak_memory((folder / decoder.config.filename).resolve(), prefill_feeds(decoder, longest), device)
        found["peak_memory_bytes"] = Measurement(float(memory), "bytes")
    except MemoryProbeError:
        pass  # shown as not measured
    expected = [(c, e) for c, e in zip(continuations, data.completions, strict=True) if e]
    if expected:
        found["completion_match"] = Measurement(sum(c[:len(e)] == e for c, e in expected) / len(expected), "ratio")
    if reference is not None:
        agreement = quality.agreement(reference.continuations, continuations)
        found["kl_to_fp32"] = Measurement(quality.mean_kl(reference.logits, logits), "nats")
        found["greedy_exact_match"] = Measurement(agreement.exact_match, "ratio")
        found["greedy_first_divergence"] = Measurement(agreement.first_divergence_mean, "tokens")
    found["size_bytes"] = Measurement(float(model_size(folder)), "bytes")
    report(100, "evaluated")
    return LanguageEvaluation(found, Reference(logits, continuations))


def prefill_feeds(decoder: Decoder, ids: list[int]) -> dict[str, np.ndarray]:
    """The decoder's inputs for the prefill of ``ids`` (an empty cache)."""
    config = decoder.config
    return {config.input_ids: np.asarray([ids], dtype=np.int64),
            config.attention_mask: np.ones((1, len(ids)), dtype=np.int64)} | dict(
        zip(config.past_names, decoder.empty_past(), strict=True))
