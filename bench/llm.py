"""Language models: every candidate against fp32 PyTorch generate, side by side in one run.

Run: .venv/bin/python bench/llm.py [--model small|large] [--rounds 3] [--new-tokens 32] [--device cpu|cuda]

``small`` trains the test decoder here (tests/llm_model.py: 4 layers, 256 hidden, on the generated
corpus); ``large`` is a randomly initialised Llama of about 110M parameters (speed and memory only:
its perplexity means nothing). The pipeline's functions convert it (ONNX with a KV cache), build the
candidates and measure quality against the fp32 decoder (perplexity on held-out text, KL, greedy
agreement on the prompt set). Then, batch 1, greedy, 2 threads each, on the same prompts, interleaved
round by round: torch fp32 ``generate`` (transformers, in a process of its own: torch timed after ONNX
Runtime in one process runs several times slower) and every ONNX decoder. Figures per model: tokens/s
(and its ratio to torch), time to first token p50 (and torch's over it), size (and torch's safetensors
over it), perplexity change against torch's, greedy agreement with torch. Goals: the chosen
candidate >= 3x torch's tokens/s, >= 4x smaller, perplexity within +3 %.
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
from workers.ml.llm.evaluate import evaluate_decoder, model_size, timed_generation, tokenise
from workers.ml.policy import CompressionPolicy, budget_violation
from workers.ml.select import choose

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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=6)
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
    policy = CompressionPolicy()
    kinds = [k for k in folders if k != "onnx-fp32"]
    choice = choose(base.metrics, [(Candidate(k, folders[k], {}), evaluations[k].metrics) for k in kinds], policy,
                    task="language_model")
    chosen = "onnx-fp32" if choice.index is None else kinds[choice.index]
    print(f"chosen by the pipeline's rule: {chosen} ({choice.summary})", flush=True)

    torch_runner = TorchRunner(hf, args.device)
    try:
        figures = side_by_side(args, hf, folders, tokens, torch_runner)
    finally:
        torch_runner.close()
    report(args, hf, folders, evaluations, figures, chosen, policy)


def side_by_side(args: argparse.Namespace, hf: Path, folders: dict[str, Path], tokens, torch_runner) -> dict:
    prompts = tokens.prompts[:args.prompts]
    decoders = {kind: Decoder(folder, threads=THREADS, device=args.device) for kind, folder in folders.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"ttft": [], "total": []} for k in ["torch", *decoders]}
    torch_runner.ask("generate", (prompts[0], 2))  # warm-up
    for decoder in decoders.values():
        timed_generation(decoder, prompts[0], 2)
    for round_ in range(args.rounds):
        for ids in prompts:
            first, _ = torch_runner.ask("generate", (ids, 1))
            whole, _ = torch_runner.ask("generate", (ids, args.new_tokens))
            times["torch"]["ttft"].append(first)
            times["torch"]["total"].append(whole)
            for kind, decoder in decoders.items():
                ttft, gaps = timed_generation(decoder, ids, args.new_tokens)
                times[kind]["ttft"].append(ttft)
                times[kind]["total"].append(ttft + sum(gaps))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    torch_logits = torch_runner.ask("logits", [t for t in tokens.texts])
    torch_nll = [quality.log_softmax(lg[:-1])[np.arange(len(ids) - 1), ids[1:]] for lg, ids in
                 zip(torch_logits, tokens.texts, strict=True)]
    torch_greedy = [torch_runner.ask("generate", (ids, tokens.new_tokens(i)))[1] for i, ids in
                    enumerate(tokens.prompts)]
    return {"times": times, "torch_perplexity": float(np.exp(-np.mean(np.concatenate(torch_nll)))),
            "torch_greedy": torch_greedy, "decoders": decoders}


def report(args, hf, folders, evaluations, figures, chosen, policy) -> None:
    times, torch_ppl = figures["times"], figures["torch_perplexity"]
    torch_size = sum(p.stat().st_size for p in hf.glob("*.safetensors"))
    torch_tps = args.new_tokens / np.median(times["torch"]["total"])
    torch_ttft = float(np.median(times["torch"]["ttft"]))
    rows = {}
    print(f"\n{'model':16} {'tokens/s':>9} {'x torch':>8} {'TTFT ms':>8} {'torch/TTFT':>10} {'MB':>7} "
          f"{'smaller':>8} {'ppl':>7} {'Δppl':>7} {'greedy=torch':>12} {'KL fp32':>8}")
    print(f"{'torch fp32':16} {torch_tps:9.0f} {1:8.2f} {torch_ttft * 1000:8.2f} {1:10.2f} {torch_size / 1e6:7.2f} "
          f"{1:8.2f} {torch_ppl:7.3f} {0:+7.1%} {1:12.2f} {'-':>8}")
    for kind in folders:
        metrics = evaluations[kind].metrics
        tps = args.new_tokens / np.median(times[kind]["total"])
        ttft = float(np.median(times[kind]["ttft"]))
        size = model_size(folders[kind])
        same = quality.agreement(figures["torch_greedy"], evaluations[kind].reference.continuations).exact_match
        ppl = metrics["perplexity"].value
        rows[kind] = {"tokens_per_s": tps, "tokens_per_s_ratio": tps / torch_tps, "ttft_ms": ttft * 1000,
                      "ttft_ratio": torch_ttft / ttft, "size_mb": size / 1e6, "size_ratio": torch_size / size,
                      "perplexity": ppl, "perplexity_change": ppl / torch_ppl - 1, "greedy_agreement_torch": same,
                      "kl_to_fp32": metrics.get("kl_to_fp32", (0.0, ""))[0],
                      "inside_budget": kind == "onnx-fp32" or budget_violation(
                          "language_model", evaluations["onnx-fp32"].metrics, metrics, policy) is None}
        r = rows[kind]
        mark = " *" if kind == chosen else ""
        print(f"{kind + mark:16} {tps:9.0f} {r['tokens_per_s_ratio']:8.2f} {r['ttft_ms']:8.2f} {r['ttft_ratio']:10.2f} "
              f"{r['size_mb']:7.2f} {r['size_ratio']:8.2f} {ppl:7.3f} {r['perplexity_change']:+7.1%} {same:12.2f} "
              f"{r['kl_to_fp32']:8.4f}")
    load = os.getloadavg()
    print(f"* chosen; batch 1, greedy, {THREADS} threads, {args.new_tokens} new tokens, {args.prompts} prompts x "
          f"{args.rounds} interleaved rounds, medians; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"model": args.model, "device": args.device, "chosen": chosen, "torch": {
        "tokens_per_s": torch_tps, "ttft_ms": torch_ttft * 1000, "size_mb": torch_size / 1e6,
        "perplexity": torch_ppl}, "candidates": rows, "load_average": load}))


if __name__ == "__main__":
    main()
