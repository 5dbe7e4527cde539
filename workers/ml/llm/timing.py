"""Token timings of several decoders compared with their uncertainty: interleaved rounds, bootstrap intervals.

As for other models (:mod:`workers.ml.timing`), decoders timed one after the other on a shared
machine are not comparable: every decoder generates in every round, on the same prompts, in an order
that rotates from round to round. A decoder's round figures are the medians of its generations in that
round (whole generation time, and time to first token); a candidate's ratios to the original's are
paired round by round and resampled (a bootstrap) into intervals. The common choice rule
(:mod:`workers.ml.select`) reads ``latency_ratio`` and its interval: here the time of a whole greedy
generation (time to first token plus every later token: the inverse of tokens/s), so a candidate wins
on speed only when that interval resolves the difference and it is at least 5 %.

Metrics per decoder (``Measurement(value, unit)``): ``ttft_p50_ms``/``ttft_p95_ms`` (time to first
token: the prompt's prefill and one pick), ``tpot_p50_ms``/``tpot_p95_ms`` (time per output token
after the first), ``tokens_per_s`` (batch 1, greedy, new tokens over generation time), and
``latency_p50_ms``/``latency_p95_ms``, the time per output token again (the millisecond scale the
choice rule's smallest difference is judged at). For the others: ``latency_ratio`` (generation time
over the original's) and ``ttft_ratio``, each with ``_low``/``_high``, its 95 % interval.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from serving.llm.decoder import Decoder
from workers.ml.evaluate import Measurement
from workers.ml.timing import MIN_ROUNDS, ROUNDS, fit_budget, ratio_interval

TIMED_PROMPTS = 8
TIMED_NEW_TOKENS = 32
TIME_BUDGET_S = 60.0  # all decoders together; fewer prompts per round, then fewer rounds (not below 8), past it


def timed_generation(decoder: Decoder, ids: list[int], new_tokens: int) -> tuple[float, list[float]]:
    """Seconds to the first token, and between each later token, of one greedy generation."""
    started = time.perf_counter()
    stamps = []
    for _ in decoder.generate(ids, new_tokens, stop_at_eos=False):
        stamps.append(time.perf_counter())
    return stamps[0] - started, list(np.diff(stamps))


def time_decoders(decoders: Sequence[Decoder], prompts: list[list[int]], *, new_tokens: int = TIMED_NEW_TOKENS,
                  rounds: int = ROUNDS, budget_s: float = TIME_BUDGET_S) -> list[dict[str, Measurement]]:
    """Timing metrics of every decoder (the original first), generating interleaved on ``prompts``."""
    prompts = prompts[:TIMED_PROMPTS]
    new_tokens = min(new_tokens, min(d.config.context_length for d in decoders) - max(len(p) for p in prompts))
    one_run = 0.0
    for decoder in decoders:
        timed_generation(decoder, prompts[0], 4)  # warm-up
        ttft, gaps = timed_generation(decoder, prompts[0], new_tokens)
        one_run += ttft + sum(gaps)
    rounds, per_round = fit_budget(one_run, max(rounds, MIN_ROUNDS), len(prompts), budget_s)
    firsts: list[list[float]] = [[] for _ in decoders]
    gaps_of: list[list[float]] = [[] for _ in decoders]
    totals: list[list[float]] = [[] for _ in decoders]
    round_ttft, round_total = np.zeros((len(decoders), rounds)), np.zeros((len(decoders), rounds))
    for r in range(rounds):
        chosen = [prompts[(r * per_round + k) % len(prompts)] for k in range(per_round)]
        for offset in range(len(decoders)):
            m = (r + offset) % len(decoders)
            runs = [timed_generation(decoders[m], ids, new_tokens) for ids in chosen]
            firsts[m] += [ttft for ttft, _ in runs]
            totals[m] += [ttft + sum(gaps) for ttft, gaps in runs]
            gaps_of[m] += [gap for _, gaps in runs for gap in gaps]
            round_ttft[m, r] = np.median([ttft for ttft, _ in runs])
            round_total[m, r] = np.median(totals[m][-per_round:])
    found = []
    for m in range(len(decoders)):
        ttft = np.percentile(np.array(firsts[m]) * 1000, [50, 95])
        tpot = np.percentile(np.array(gaps_of[m] or [0.0]) * 1000, [50, 95])
        figures = {
            "ttft_p50_ms": Measurement(float(ttft[0]), "ms"), "ttft_p95_ms": Measurement(float(ttft[1]), "ms"),
            "tpot_p50_ms": Measurement(float(tpot[0]), "ms"), "tpot_p95_ms": Measurement(float(tpot[1]), "ms"),
            "latency_p50_ms": Measurement(float(tpot[0]), "ms"), "latency_p95_ms": Measurement(float(tpot[1]), "ms"),
            "tokens_per_s": Measurement(len(totals[m]) * new_tokens / sum(totals[m]), "tokens/s"),
        }
        if m:
            figures |= _ratio("latency_ratio", round_total[m], round_total[0])
            figures |= _ratio("ttft_ratio", round_ttft[m], round_ttft[0])
        found.append(figures)
    return found


def _ratio(name: str, candidate: np.ndarray, reference: np.ndarray) -> dict[str, Measurement]:
    interval = ratio_interval(candidate, reference)
    return {name: Measurement(interval.ratio, "ratio"), f"{name}_low": Measurement(interval.low, "ratio"),
            f"{name}_high": Measurement(interval.high, "ratio")}
