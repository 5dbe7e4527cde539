"""Language models: every candidate against fp32 PyTorch generate, side by side in one run.

Run: .venv/bin/python bench/llm.py [--model small|large] [--rounds 8] [--new-tokens 32] [--device cpu|cuda]

``small`` trains the test decoder here (tests/llm_model.py: 4 layers, 256 hidden, on the generated
corpus); ``large`` is a randomly initialised Llama of about 110M parameters (speed and memory only:
its perplexity means nothing). The pipeline's functions convert it (ONNX with a KV cache), build the
candidates and measure quality against the fp32 decoder (perplexity on held-out text, KL, greedy
agreement on the prompt set). Then, batch 1, greedy, 2 threads each, on the same prompts, interleaved
round by round: torch fp32 ``generate`` (transformers, in a process of its own: torch timed after ONNX
Runtime in one process runs several times slower) and every ONNX decoder. Figures per model: tokens/s
and its ratio to torch's, time to first token p50 and torch's over it (each ratio of medians with its 95 %
bootstrap interval over the interleaved rounds, workers/ml/timing.py; a ratio whose interval holds 1 or
that is within 5 % of it is a tie), size (and torch's safetensors over it), perplexity change against
torch's, greedy agreement with torch. The candidate is chosen as the pipeline chooses: quality per
decoder, then all decoders timed together interleaved (workers/ml/llm/timing.py) and the common rule.
Goals: the chosen candidate >= 3x torch's tokens/s, >= 4x smaller, perplexity within +3 %.
The last line printed is one JSON object with the figures and the load average.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from releases.llm_intake import parse_eval_data
from serving.llm.decoder import Decoder
from tests.llm_model import eval_jsonl, random_large, train_small
from workers.ml.compress import Candidate
from workers.ml.llm import quality
from workers.ml.llm.candidates import NotApplicable, quantize
from workers.ml.llm.convert import run_builder
from workers.ml.llm.evaluate import SESSION_THREADS, evaluate_decoder, model_size, tokenise
from workers.ml.llm.timing import time_decoders, timed_generation
from workers.ml.policy import CompressionPolicy, budget_violation
from workers.ml.select import MIN_RELATIVE, choose
from workers.ml.timing import RatioInterval, ratio_interval

THREADS = 2


class TorchRunner:
    """fp32 transformers generate in its own process, driven over a pipe and timed on its side."""

    def __init__(self, folder: Path, device: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_torch_worker, args=(child, str(folder), device), daemon=True)
        self.process.start()

    def ask(self, command: str, payload: object) -> object:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["small", "large"], default="small")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (at least 2)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=150, help="training steps of the small model")
    parser.add_argument("--kinds", default="int4-rtn-b32,int4-rtn-b128,int4-gptq-b128,int8-b32,fp16")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    started = time.monotonic()
    hf = scratch / "hf"
    hf.mkdir()
    if args.model == "small":
        train_small(hf, steps=args.steps)
    else:
        random_large(hf)
    print(f"model {args.model} made in {time.monotonic() - started:.0f} s", flush=True)
    data = parse_eval_data(eval_jsonl())
    folders = {"onnx-fp32": scratch / "onnx-fp32"}
    run_builder(hf, folders["onnx-fp32"], provider="cuda" if args.device.startswith("cuda") else "cpu")
    tokens = tokenise(folders["onnx-fp32"], data.texts, data.prompts)
    for kind in args.kinds.split(","):
        try:
            quantize(kind, folders["onnx-fp32"], scratch / kind, prompts=tokens.prompts, device=args.device,
                     hf_folder=hf)
            folders[kind] = scratch / kind
        except NotApplicable as exc:
            print(f"{kind}: not applicable: {exc}", flush=True)
    base = evaluate_decoder(folders["onnx-fp32"], tokens, device=args.device)
    evaluations = {"onnx-fp32": base} | {
        kind: evaluate_decoder(folder, tokens, reference=base.reference, device=args.device)
        for kind, folder in folders.items() if kind != "onnx-fp32"}
    speeds = time_decoders([Decoder(folder, threads=SESSION_THREADS, device=args.device)
                            for folder in folders.values()], tokens.prompts)
    metrics = {kind: evaluations[kind].metrics | speed for kind, speed in zip(folders, speeds, strict=True)}
    policy = CompressionPolicy()
    kinds = [k for k in folders if k != "onnx-fp32"]
    choice = choose(metrics["onnx-fp32"], [(Candidate(k, folders[k], {}), metrics[k]) for k in kinds], policy,
                    task="language_model")
    chosen = "onnx-fp32" if choice.index is None else kinds[choice.index]
    print(f"chosen by the pipeline's rule: {chosen} ({choice.summary})", flush=True)

    torch_runner = TorchRunner(hf, args.device)
    try:
        figures = side_by_side(args, hf, folders, tokens, torch_runner)
    finally:
        torch_runner.close()
    report(args, hf, folders, evaluations, metrics, figures, chosen, policy)


def side_by_side(args: argparse.Namespace, hf: Path, folders: dict[str, Path], tokens, torch_runner) -> dict:
    """Interleaved rounds of torch and every decoder on the same prompts; per model and round, the medians
    of its whole generation times and times to first token."""
    prompts = tokens.prompts[:args.prompts]
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
    torch_logits = torch_runner.ask("logits", [t for t in tokens.texts])
    torch_nll = [quality.log_softmax(lg[:-1])[np.arange(len(ids) - 1), ids[1:]] for lg, ids in
                 zip(torch_logits, tokens.texts, strict=True)]
    torch_greedy = [torch_runner.ask("generate", (ids, tokens.new_tokens(i)))[1] for i, ids in
                    enumerate(tokens.prompts)]
    return {"rounds": rounds, "torch_perplexity": float(np.exp(-np.mean(np.concatenate(torch_nll)))),
            "torch_greedy": torch_greedy}


def verdict(interval: RatioInterval) -> str:
    """faster / slower only when the interval resolves it and it is at least MIN_RELATIVE; else a tie."""
    if interval.low > 1 and interval.ratio >= 1 + MIN_RELATIVE:
        return "faster"
    if interval.high < 1 and interval.ratio <= 1 / (1 + MIN_RELATIVE):
        return "slower"
    return "tie"


def report(args, hf, folders, evaluations, metrics, figures, chosen, policy) -> None:
    rounds, torch_ppl = figures["rounds"], figures["torch_perplexity"]
    torch_size = sum(p.stat().st_size for p in hf.glob("*.safetensors"))
    torch_tps = args.new_tokens / np.median(rounds["torch"]["total"])
    torch_ttft = float(np.median(rounds["torch"]["ttft"]))
    rows = {}
    print(f"\n{'model':16} {'tokens/s':>9} {'x torch (95% interval)':>24} {'TTFT ms':>8} "
          f"{'torch/TTFT (95% interval)':>26} {'MB':>7} {'smaller':>8} {'ppl':>7} {'Δppl':>7} {'greedy=torch':>12} "
          f"{'KL fp32':>8}")
    print(f"{'torch fp32':16} {torch_tps:9.0f} {'1':>24} {torch_ttft * 1000:8.2f} {'1':>26} "
          f"{torch_size / 1e6:7.2f} {1:8.2f} {torch_ppl:7.3f} {0:+7.1%} {1:12.2f} {'-':>8}")
    for kind in folders:
        found = metrics[kind]
        tps = args.new_tokens / np.median(rounds[kind]["total"])
        ttft = float(np.median(rounds[kind]["ttft"]))
        # Torch's time over the decoder's (above 1: the decoder is faster), with its bootstrap interval.
        speed = ratio_interval(rounds["torch"]["total"], rounds[kind]["total"])
        first = ratio_interval(rounds["torch"]["ttft"], rounds[kind]["ttft"])
        size = model_size(folders[kind])
        same = quality.agreement(figures["torch_greedy"], evaluations[kind].reference.continuations).exact_match
        ppl = found["perplexity"].value
        rows[kind] = {"tokens_per_s": tps, "tokens_per_s_ratio": speed.ratio,
                      "tokens_per_s_ratio_interval": [speed.low, speed.high], "tokens_per_s_vs_torch": verdict(speed),
                      "ttft_ms": ttft * 1000, "ttft_ratio": first.ratio, "ttft_ratio_interval": [first.low, first.high],
                      "ttft_vs_torch": verdict(first), "size_mb": size / 1e6, "size_ratio": torch_size / size,
                      "perplexity": ppl, "perplexity_change": ppl / torch_ppl - 1, "greedy_agreement_torch": same,
                      "kl_to_fp32": found.get("kl_to_fp32", (0.0, ""))[0],
                      "inside_budget": kind == "onnx-fp32" or budget_violation(
                          "language_model", metrics["onnx-fp32"], found, policy) is None}
        if "latency_ratio" in found:  # the pipeline's own timing, against the fp32 decoder
            rows[kind]["generation_time_vs_fp32"] = [found[f"latency_ratio{e}"].value for e in ("", "_low", "_high")]
        r = rows[kind]
        mark = " *" if kind == chosen else ""
        print(f"{kind + mark:16} {tps:9.0f} {_interval(speed):>24} {r['ttft_ms']:8.2f} {_interval(first):>26} "
              f"{r['size_mb']:7.2f} {r['size_ratio']:8.2f} {ppl:7.3f} {r['perplexity_change']:+7.1%} {same:12.2f} "
              f"{r['kl_to_fp32']:8.4f}")
    load = os.getloadavg()
    print(f"* chosen; batch 1, greedy, {THREADS} threads, {args.new_tokens} new tokens, {args.prompts} prompts x "
          f"{args.rounds} interleaved rounds; ratios of medians with 95% bootstrap intervals over rounds, "
          f"'tie' where not resolved or under {MIN_RELATIVE:.0%}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"model": args.model, "device": args.device, "chosen": chosen, "torch": {
        "tokens_per_s": torch_tps, "ttft_ms": torch_ttft * 1000, "size_mb": torch_size / 1e6,
        "perplexity": torch_ppl}, "candidates": rows, "load_average": load}))


def _interval(interval: RatioInterval) -> str:
    shown = f"{interval.ratio:.2f} ({interval.low:.2f}-{interval.high:.2f})"
    return shown if verdict(interval) != "tie" else f"{shown} tie"


if __name__ == "__main__":
    main()
