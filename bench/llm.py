"""Language models: the candidate Slipway's pipeline chooses, and every other, against fp32 PyTorch generate.

Run: .venv/bin/python bench/llm.py [--rounds 8] [--new-tokens 32] [--prompts 4] [--device cpu|cuda]

Two models, each for what it can tell (issue 17, point 6):

1. **The trained decoder** (tests/llm_model.py: 4 layers, 256 hidden, trained here for ``--steps`` on
   the generated corpus shipped in tests/data, about 30 s on 2 busy cores), where perplexity and greedy
   agreement mean something. The pipeline's own functions convert it (ONNX with a KV cache, checked
   against torch), build every candidate, measure each (perplexity on held-out text, KL and greedy
   agreement to the fp32 decoder, all decoders timed together interleaved) and choose with the common
   rule and the default language-model budget (workers/ml/select.py, workers/ml/policy.py), as the
   evaluate stage does. Its quality figures are then set against torch's: perplexity change against
   torch fp32's, and greedy agreement with torch ``generate``.
2. **The speed model**: a randomly initialised Llama of about 124M parameters (``--large-layers 12``),
   its weights meaning nothing, so only speed, size and memory are read from it. Every recipe built on the
   trained decoder is applied to it; then, batch 1, greedy, 2 threads each, on the same prompts,
   interleaved round by round: torch fp32 ``generate`` (transformers, in a process of its own: torch
   timed after ONNX Runtime in one process runs several times slower) and every ONNX decoder.
   Figures: tokens/s and its ratio to torch's, time to first token and torch's over it (ratios of
   medians with their 95 % bootstrap intervals over the rounds, workers/ml/timing.py; a ratio whose
   interval holds 1 or within 5 % of it is a tie), size (torch's safetensors over it) and peak memory
   of each ONNX decoder in a fresh process (workers/ml/memory.py).

The goals (issue 17, point 7) are printed with the chosen candidate's figures and the gap to each:
tokens/s >= 3x torch's and >= 4x smaller (speed model), perplexity within +3 % of torch's and greedy
agreement >= 0.9 with torch generate (trained decoder). The last line printed is one JSON object with
every figure and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from releases.llm_intake import parse_eval_data
from serving.llm.decoder import Decoder
from tests.llm_model import eval_jsonl, random_large, train_small
from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement
from workers.ml.llm import candidates as lab
from workers.ml.llm import quality
from workers.ml.llm.convert import convert, run_builder
from workers.ml.llm.evaluate import (
    SESSION_THREADS,
    TokenisedEvalSet,
    evaluate_decoder,
    model_size,
    prefill_feeds,
    tokenise,
)
from workers.ml.llm.timing import time_decoders, timed_generation
from workers.ml.memory import MemoryProbeError, peak_memories
from workers.ml.policy import CompressionPolicy
from workers.ml.select import MIN_RELATIVE, Choice, choose
from workers.ml.timing import RatioInterval, ratio_interval

THREADS = 2
FP32 = "onnx-fp32"
GOAL_SPEED, GOAL_SMALLER = 3.0, 4.0


class TorchRunner:
    """fp32 transformers generate in its own process, driven over a pipe and timed on its side."""

    def __init__(self, folder: Path, device: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_torch_worker, args=(child, str(folder), device), daemon=True)
        self.process.start()

    def ask(self, command: str, payload: object) -> Any:
        self.connection.send((command, payload))
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(("stop", None))
        self.process.join()


def _torch_worker(connection, folder: str, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, dtype=torch.float32).to(device).eval()

    def generate(ids: list[int], new: int) -> tuple[float, list[int]]:
        tokens = torch.tensor([ids], device=device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=new,
                                 min_new_tokens=new, do_sample=False, pad_token_id=0)
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out[0, len(ids):].tolist()

    while True:
        command, payload = connection.recv()
        if command == "stop":
            return
        if command == "logits":
            with torch.inference_mode():
                connection.send([model(torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
                                 for ids in payload])
        elif command == "generate":
            connection.send(generate(*payload))


@dataclass
class Built:
    """The decoders of one model: folder per kind (the fp32 decoder first), and why the others are missing."""

    hf: Path
    folders: dict[str, Path]
    missing: dict[str, str]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds against torch (at least 2)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=150, help="training steps of the trained decoder")
    parser.add_argument("--large-layers", type=int, default=12, help="layers of the speed model (12: 124M)")
    parser.add_argument("--kinds", default=",".join(lab.KINDS))
    args = parser.parse_args()
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    data = parse_eval_data(eval_jsonl())
    kinds = args.kinds.split(",")

    started = time.monotonic()
    trained = scratch / "trained"
    train_small(trained / "hf", steps=args.steps)
    training = json.loads((trained / "hf" / "training.json").read_text())
    print(f"trained decoder: {training['steps']} steps, final loss {training['final_loss']:.3f}, "
          f"{training['seconds']:.0f} s", flush=True)
    conversion = convert(trained / "hf", trained / FP32, tokenise(trained / "hf", [], data.prompts).prompts)
    print(f"converted: logits max |diff| {conversion.parity_max_abs_diff:.2g} vs torch, greedy identical on "
          f"{conversion.greedy_identical:.0%} of the prompts", flush=True)
    tokens = tokenise(trained / FP32, data.texts, data.prompts)
    small = build(trained, kinds, tokens, args.device)
    measured = measure_and_choose(small, tokens, args.device)
    print(f"chosen by the pipeline on the trained decoder: {measured.chosen} ({measured.choice.summary}); "
          f"{time.monotonic() - started:.0f} s", flush=True)
    with Torch(trained / "hf", args.device) as torch_runner:
        against_torch = quality_against_torch(torch_runner, tokens)

    started = time.monotonic()
    speed_hf = random_large(scratch / "large" / "hf", layers=args.large_layers)
    params = parameters(speed_hf)
    run_builder(speed_hf, scratch / "large" / FP32, provider="cuda" if args.device.startswith("cuda") else "cpu")
    large_tokens = tokenise(scratch / "large" / FP32, [], data.prompts)
    large = build(scratch / "large", [k for k in kinds if k in small.folders], large_tokens, args.device)
    print(f"speed model: {params / 1e6:.0f}M parameters, {len(large.folders)} decoders built in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    memory = peak_memory(large, large_tokens, args.device)
    with Torch(speed_hf, args.device) as torch_runner:
        rounds = side_by_side(args, large.folders, large_tokens.prompts, torch_runner)
    report(args, small, large, measured, against_torch, rounds, memory, params, load_before)


class Torch:
    """A TorchRunner for the length of a ``with`` block."""

    def __init__(self, folder: Path, device: str) -> None:
        self.runner = TorchRunner(folder, device)

    def __enter__(self) -> TorchRunner:
        return self.runner

    def __exit__(self, *exc: object) -> None:
        self.runner.close()


def build(root: Path, kinds: list[str], tokens: TokenisedEvalSet, device: str) -> Built:
    """Every candidate of ``root``'s fp32 decoder, as the compress stage builds them (one failing does not stop
    the others)."""
    built = Built(root / "hf", {FP32: root / FP32}, {})
    for kind in kinds:
        try:
            lab.quantize(kind, root / FP32, root / kind, prompts=tokens.prompts, device=device, hf_folder=root / "hf")
            built.folders[kind] = root / kind
        except lab.NotApplicable as exc:
            built.missing[kind] = f"not applicable: {exc}"
        except Exception as exc:  # one failing is that candidate's result, as in the compress stage
            built.missing[kind] = f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    return built


def measured_kinds(built: Built) -> list[str]:
    return [kind for kind in built.folders if kind != FP32]


@dataclass
class Measured:
    """Per decoder of the trained model: its metrics as the evaluate stage stores them, its greedy continuations."""

    metrics: dict[str, dict[str, Measurement]]
    continuations: dict[str, list[list[int]]]
    choice: Choice
    chosen: str


def measure_and_choose(built: Built, tokens: TokenisedEvalSet, device: str) -> Measured:
    """Quality per decoder, then every decoder timed together, then the common rule: the evaluate stage's
    steps (workers/stages/llm.py) on folders instead of stored artifacts."""
    base = evaluate_decoder(built.folders[FP32], tokens, device=device)
    evaluations = {FP32: base} | {kind: evaluate_decoder(built.folders[kind], tokens, reference=base.reference,
                                                         device=device) for kind in measured_kinds(built)}
    speeds = time_decoders([Decoder(folder, threads=SESSION_THREADS, device=device)
                            for folder in built.folders.values()], tokens.prompts)
    metrics = {kind: evaluations[kind].metrics | speed for kind, speed in zip(built.folders, speeds, strict=True)}
    kinds = measured_kinds(built)
    choice = choose(metrics[FP32], [(Candidate(kind, built.folders[kind], {}), metrics[kind]) for kind in kinds],
                    CompressionPolicy(), task="language_model")
    return Measured(metrics, {kind: e.reference.continuations for kind, e in evaluations.items()}, choice,
                    FP32 if choice.index is None else kinds[choice.index])


def quality_against_torch(torch_runner: TorchRunner, tokens: TokenisedEvalSet) -> dict:
    """Torch fp32's perplexity on the held-out text and its greedy continuations of the prompts."""
    logits = torch_runner.ask("logits", tokens.texts)
    nll = [quality.log_softmax(lg[:-1])[np.arange(len(ids) - 1), ids[1:]] for lg, ids in
           zip(logits, tokens.texts, strict=True)]
    greedy = [torch_runner.ask("generate", (ids, tokens.new_tokens(i)))[1] for i, ids in enumerate(tokens.prompts)]
    return {"perplexity": float(np.exp(-np.mean(np.concatenate(nll)))), "greedy": greedy}


def parameters(hf: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in hf.glob("*.safetensors"):
        with safe_open(str(path), "np") as weights:
            total += sum(int(np.prod(weights.get_slice(name).get_shape())) for name in weights.keys())  # noqa: SIM118
    return total


def peak_memory(built: Built, tokens: TokenisedEvalSet, device: str) -> dict[str, int | None]:
    """Peak memory of each decoder (load and the prefill of the longest prompt) in a fresh process."""
    decoder = Decoder(built.folders[FP32], threads=1, device=device)
    feeds = prefill_feeds(decoder, max(tokens.prompts, key=len))
    paths = [folder / decoder.config.filename for folder in built.folders.values()]
    try:
        return dict(zip(built.folders, peak_memories(paths, feeds, device), strict=True))
    except MemoryProbeError as exc:
        print(f"peak memory not measured: {exc}", flush=True)
        return dict.fromkeys(built.folders)


def side_by_side(args: argparse.Namespace, folders: dict[str, Path], prompts: list[list[int]],
                 torch_runner: TorchRunner) -> dict[str, dict[str, np.ndarray]]:
    """Interleaved rounds of torch and every decoder on the same prompts; per model and round, the medians
    of its whole generation times and times to first token."""
    prompts = prompts[:args.prompts]
    decoders = {kind: Decoder(folder, threads=THREADS, device=args.device) for kind, folder in folders.items()}
    names = ["torch", *decoders]
    rounds = {name: {"ttft": np.zeros(args.rounds), "total": np.zeros(args.rounds)} for name in names}
    torch_runner.ask("generate", (prompts[0], 2))  # warm-up
    for decoder in decoders.values():
        timed_generation(decoder, prompts[0], 2)
    for round_ in range(args.rounds):
        runs: dict[str, dict[str, list[float]]] = {name: {"ttft": [], "total": []} for name in names}
        for index, ids in enumerate(prompts):
            for offset in range(len(names)):  # the order rotates from prompt to prompt and round to round
                name = names[(round_ + index + offset) % len(names)]
                if name == "torch":
                    first, _ = torch_runner.ask("generate", (ids, 1))
                    whole, _ = torch_runner.ask("generate", (ids, args.new_tokens))
                else:
                    first, gaps = timed_generation(decoders[name], ids, args.new_tokens)
                    whole = first + sum(gaps)
                runs[name]["ttft"].append(first)
                runs[name]["total"].append(whole)
        for name in names:
            for figure in ("ttft", "total"):
                rounds[name][figure][round_] = np.median(runs[name][figure])
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    return rounds


def verdict(interval: RatioInterval) -> str:
    """faster / slower only when the interval resolves it and it is at least MIN_RELATIVE; else a tie."""
    if interval.low > 1 and interval.ratio >= 1 + MIN_RELATIVE:
        return "faster"
    if interval.high < 1 and interval.ratio <= 1 / (1 + MIN_RELATIVE):
        return "slower"
    return "tie"


def _value(metrics: dict[str, Measurement], name: str) -> float | None:
    return metrics[name].value if name in metrics else None


def report(args, small: Built, large: Built, measured: Measured, against_torch: dict, rounds, memory, params: int,
           load_before) -> None:
    metrics, choice, chosen = measured.metrics, measured.choice, measured.chosen
    torch_size = sum(p.stat().st_size for p in large.hf.glob("*.safetensors"))
    torch_tps = args.new_tokens / np.median(rounds["torch"]["total"])
    torch_ttft = float(np.median(rounds["torch"]["ttft"]))
    reasons = dict(zip(measured_kinds(small), choice.reasons, strict=True)) | {FP32: choice.original_reason}
    rows: dict[str, dict] = {}
    print(f"\nspeed model ({params / 1e6:.0f}M parameters, random weights): batch 1, greedy, {THREADS} threads, "
          f"{args.new_tokens} new tokens, {args.prompts} prompts x {args.rounds} interleaved rounds with torch; "
          f"trained decoder: perplexity and greedy agreement against torch fp32, the pipeline's choice")
    print(f"{'model':16} {'tokens/s':>8} {'x torch (95% interval)':>26} {'TTFT ms':>8} "
          f"{'torch/TTFT (95% interval)':>27} {'MB':>7} {'smaller':>7} {'peak MB':>7} | {'Δppl':>7} "
          f"{'greedy=torch':>12} {'KL fp32':>7}  verdict")
    print(f"{'torch fp32':16} {torch_tps:8.0f} {'1':>26} {torch_ttft * 1000:8.1f} {'1':>27} "
          f"{torch_size / 1e6:7.1f} {1:7.2f} {'':>7} | {0:+7.2%} {1:12.2f} {'-':>7}")
    for kind in small.folders:
        found = metrics[kind]
        row = {"perplexity": found["perplexity"].value,
               "perplexity_change": found["perplexity"].value / against_torch["perplexity"] - 1,
               "greedy_agreement_torch": quality.agreement(against_torch["greedy"],
                                                           measured.continuations[kind]).exact_match,
               "kl_to_fp32": _value(found, "kl_to_fp32"), "greedy_agreement_fp32": _value(found, "greedy_exact_match"),
               "tokens_per_s_trained": found["tokens_per_s"].value,
               "verdict": "chosen" if kind == chosen else reasons[kind] or "eligible"}
        if "latency_ratio" in found:  # the pipeline's timing on the trained decoder, against its fp32 decoder
            row["generation_time_vs_fp32"] = [found[f"latency_ratio{e}"].value for e in ("", "_low", "_high")]
        if kind in large.folders:
            speed = ratio_interval(rounds["torch"]["total"], rounds[kind]["total"])
            first = ratio_interval(rounds["torch"]["ttft"], rounds[kind]["ttft"])
            size = model_size(large.folders[kind])
            row |= {"tokens_per_s": args.new_tokens / np.median(rounds[kind]["total"]),
                    "tokens_per_s_ratio": speed.ratio, "tokens_per_s_ratio_interval": [speed.low, speed.high],
                    "tokens_per_s_vs_torch": verdict(speed), "ttft_ms": float(np.median(rounds[kind]["ttft"])) * 1000,
                    "ttft_ratio": first.ratio, "ttft_ratio_interval": [first.low, first.high],
                    "ttft_vs_torch": verdict(first), "size_mb": size / 1e6, "size_ratio": torch_size / size,
                    "peak_memory_mb": None if memory.get(kind) is None else memory[kind] / 1e6}
            peak = "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
            speed_columns = (f"{row['tokens_per_s']:8.0f} {_interval(speed):>26} {row['ttft_ms']:8.1f} "
                             f"{_interval(first):>27} {row['size_mb']:7.1f} {row['size_ratio']:7.2f} {peak:>7}")
        else:
            speed_columns = f"{'speed model: ' + large.missing.get(kind, 'not built')[:60]:>101}"
        rows[kind] = row
        kl = "-" if row["kl_to_fp32"] is None else f"{row['kl_to_fp32']:.4f}"
        print(f"{kind + (' *' if kind == chosen else ''):16} {speed_columns} | {row['perplexity_change']:+7.2%} "
              f"{row['greedy_agreement_torch']:12.2f} {kl:>7}  {row['verdict']}")
    for kind, why in small.missing.items():
        rows[kind] = {"verdict": why}
        print(f"{kind:16} {why}")
    goals = goal_lines(rows[chosen], CompressionPolicy())
    print(f"\n* chosen by the pipeline's rule on the trained decoder ({choice.summary}); its recipe applied to the "
          f"speed model. Goals for it:")
    for goal in goals:
        print(f"  {goal['goal']:52} measured {goal['measured']:>22}  {goal['status']}")
    load = os.getloadavg()
    print(f"ratios of medians with 95% bootstrap intervals over rounds, 'tie' where not resolved or under "
          f"{MIN_RELATIVE:.0%}; load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"device": args.device, "chosen": chosen, "choice": choice.summary,
                      "speed_model_parameters": params, "torch": {
                          "tokens_per_s": torch_tps, "ttft_ms": torch_ttft * 1000, "size_mb": torch_size / 1e6,
                          "perplexity_trained": against_torch["perplexity"]},
                      "candidates": rows, "goals": goals, "load_average_before": load_before, "load_average": load}))


def goal_lines(row: dict, policy: CompressionPolicy) -> list[dict]:
    """Each goal of issue 17 with the chosen candidate's figure and whether it is met, and by how much not."""
    lines = []
    if "tokens_per_s_ratio" in row:
        ratio, (low, high) = row["tokens_per_s_ratio"], row["tokens_per_s_ratio_interval"]
        status = ("met" if low >= GOAL_SPEED else f"missed: x{GOAL_SPEED / ratio:.2f} short" if high < GOAL_SPEED
                  else "undecided: the interval holds the goal")
        lines.append({"goal": f"tokens/s >= {GOAL_SPEED:g}x torch generate (speed model)",
                      "measured": f"{ratio:.2f}x ({low:.2f}-{high:.2f})", "status": status})
        smaller = row["size_ratio"]
        lines.append({"goal": f">= {GOAL_SMALLER:g}x smaller than torch's safetensors (speed model)",
                      "measured": f"{smaller:.2f}x",
                      "status": "met" if smaller >= GOAL_SMALLER else f"missed: x{GOAL_SMALLER / smaller:.2f} short"})
    change = row["perplexity_change"]
    lines.append({"goal": f"perplexity <= +{policy.max_perplexity_increase:.0%} over torch fp32's (trained)",
                  "measured": f"{change:+.2%}", "status": "met" if change <= policy.max_perplexity_increase else
                  f"missed by {change - policy.max_perplexity_increase:.2%}"})
    agreement = row["greedy_agreement_torch"]
    lines.append({"goal": f"greedy agreement with torch generate >= {policy.min_greedy_agreement:g} (trained)",
                  "measured": f"{agreement:.2f}", "status": "met" if agreement >= policy.min_greedy_agreement else
                  f"missed by {policy.min_greedy_agreement - agreement:.2f}"})
    return lines


def _interval(interval: RatioInterval) -> str:
    shown = f"{interval.ratio:.2f} ({interval.low:.2f}-{interval.high:.2f})"
    return shown if verdict(interval) != "tie" else f"{shown} tie"


if __name__ == "__main__":
    main()
