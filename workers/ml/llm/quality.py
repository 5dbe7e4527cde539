"""How well a decoder models text and how closely a candidate follows the fp32 model (pure numpy).

* perplexity: exp of the mean negative log-likelihood of every next token of the held-out texts,
  each text cut into windows of at most the model's context (scored independently);
* next-token KL divergence KL(fp32 || candidate), averaged over every position of every prompt;
* greedy agreement: the share of prompts whose greedy continuation is token for token the fp32
  model's (exact match), and the mean position of the first differing token (the continuation's
  length when none differs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.llm.decoder import Decoder


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def perplexity(decoder: Decoder, texts: Sequence[list[int]]) -> float:
    window = decoder.config.context_length
    total, count = 0.0, 0
    for ids in texts:
        for start in range(0, max(len(ids) - 1, 0), window):
            chunk = ids[start:start + window]
            if len(chunk) < 2:
                continue
            logp = log_softmax(decoder.logits(chunk)[:-1])
            total -= float(logp[np.arange(len(chunk) - 1), chunk[1:]].sum())
            count += len(chunk) - 1
    if count == 0:
        raise ValueError("the held-out text holds fewer than two tokens")
    return float(np.exp(total / count))


def mean_kl(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """Mean KL(reference || candidate) per position, over logits arrays (positions, vocab) paired up."""
    values = []
    for ref, cand in zip(reference, candidate, strict=True):
        p_log, q_log = log_softmax(ref), log_softmax(cand)
        values.append((np.exp(p_log) * (p_log - q_log)).sum(axis=-1))
    return float(np.mean(np.concatenate(values)))


@dataclass(frozen=True)
class Agreement:
    exact_match: float  # share of prompts with identical continuations
    first_divergence_mean: float  # mean index of the first differing token (length when identical)
    first_divergence_min: int


def agreement(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> Agreement:
    positions, exact = [], 0
    for ref, cand in zip(reference, candidate, strict=True):
        length = max(len(ref), len(cand))
        first = next((i for i in range(length) if i >= len(ref) or i >= len(cand) or ref[i] != cand[i]), None)
        exact += first is None
        positions.append(length if first is None else first)
    if not positions:
        raise ValueError("no prompts to compare")
    return Agreement(exact / len(positions), float(np.mean(positions)), int(min(positions)))


def greedy(decoder: Decoder, prompts: Sequence[list[int]], new_tokens: int) -> list[list[int]]:
    return [list(decoder.generate(ids, new_tokens, stop_at_eos=False)) for ids in prompts]
