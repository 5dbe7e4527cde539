"""The stages of a language model's release that differ from other models' (validate, convert, compress,
evaluate): a Hugging Face folder (uncompressed tar) becomes an ONNX decoder with a KV cache, its
weight-only candidates are built and measured, and the fastest inside the perplexity and
greedy-agreement budget is chosen. Every decoder travels as one artifact: an uncompressed tar of its
folder (serving/llm/bundle.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from releases.candidates import serving_artifact
from releases.intake import BadUpload
from releases.llm_intake import LanguageEvalSet, parse_eval_data
from releases.models import Artifact, Deployment, Release
from releases.storage import get_store, work_root
from serving.llm.bundle import BundleError, pack, unpack, unpacked
from serving.llm.decoder import Decoder, DecoderError
from serving.llm.text import TextError
from workers.compression import (
    candidate_failed,
    compression_policy,
    fp32_artifact,
    record_choice,
    save_metrics,
    store_candidate,
)
from workers.context import StageContext, StageFailed
from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement
from workers.ml.llm import candidates as lab
from workers.ml.llm.convert import ConversionError, convert
from workers.ml.llm.evaluate import (
    SESSION_THREADS,
    LanguageEvaluation,
    Reference,
    TokenisedEvalSet,
    evaluate_decoder,
    tokenise,
)
from workers.ml.llm.timing import time_decoders
from workers.ml.select import choose
from workers.ml.timing import RatioInterval

BUNDLE_FORMAT = "llm-onnx-tar"
ERRORS = (BundleError, DecoderError, TextError, ConversionError, ValueError, OSError)


def eval_data(ctx: StageContext) -> LanguageEvalSet:
    try:
        return parse_eval_data(ctx.eval_data_path.read_bytes())
    except BadUpload as exc:
        raise StageFailed(f"evaluation data: {exc}") from None


def decoder_folder(artifact: Artifact) -> Path:
    """An ONNX decoder artifact unpacked on this machine (once per sha256)."""
    return unpacked(get_store().local_path(artifact.sha256), work_root() / "llm", artifact.sha256)


def _hf_folder(ctx: StageContext) -> Path:
    folder = work_root() / "llm-builds" / ctx.version.artifact.sha256
    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        unpack(ctx.artifact_path, folder)
    return folder


def validate(ctx: StageContext) -> None:
    ctx.progress(5, "reading the evaluation data")
    data = eval_data(ctx)
    ctx.log(f"evaluation data: {len(data.texts)} held-out texts, {len(data.prompts)} prompts "
            f"({sum(1 for _, c in data.prompts if c)} with an expected completion)")
    try:
        folder = _hf_folder(ctx)
    except BundleError as exc:
        raise StageFailed(f"model: {exc}") from None
    ctx.log("build files: " + ", ".join(sorted(p.name for p in folder.iterdir())))


def _store_bundle(ctx: StageContext, parent: Artifact, kind: str, folder: Path, recipe: dict) -> Artifact:
    archive = pack(folder, ctx.work_dir() / f"{kind}.tar")
    artifact = store_candidate(ctx.release, parent, Candidate(kind, archive, recipe), file_format=BUNDLE_FORMAT)
    archive.unlink()
    return artifact


def convert_stage(ctx: StageContext) -> None:
    data = eval_data(ctx)
    hf = _hf_folder(ctx)
    ctx.progress(10, "building the ONNX decoder with a KV cache")
    out = ctx.work_dir() / "onnx-fp32"
    shutil.rmtree(out, ignore_errors=True)
    try:
        prompts = tokenise(hf, [], data.prompts).prompts
        conversion = convert(hf, out, prompts)
    except ERRORS as exc:
        raise StageFailed(f"conversion to ONNX: {exc}") from None
    ctx.release.artifacts.filter(kind=Artifact.Kind.ONNX_FP32).delete()
    artifact = _store_bundle(ctx, ctx.version.artifact, Artifact.Kind.ONNX_FP32, out, conversion.recipe)
    save_metrics(ctx.release, artifact, {
        "conversion_parity_max_abs_diff": Measurement(conversion.parity_max_abs_diff, "abs"),
        "conversion_greedy_identical": Measurement(conversion.greedy_identical, "ratio")})
    ctx.log(f"converted to ONNX with a KV cache ({artifact.size_bytes / 1e6:.2f} MB): logits max |diff| "
            f"{conversion.parity_max_abs_diff:.3g} vs torch, greedy tokens identical on "
            f"{conversion.greedy_identical:.0%} of {len(prompts)} prompts")


def compress(ctx: StageContext) -> None:
    kinds = [kind for kind in ctx.policy.candidates if kind in lab.KINDS]
    if not kinds:
        ctx.log("the policy asks for no language-model candidates")
        return
    parent = fp32_artifact(ctx.release)
    ctx.release.artifacts.exclude(kind=Artifact.Kind.ONNX_FP32).delete()
    source = decoder_folder(parent)
    prompts = tokenise(source, [], eval_data(ctx).prompts).prompts
    for index, kind in enumerate(kinds):
        ctx.progress(100 * index / len(kinds), f"{kind}: building")
        out = ctx.work_dir() / kind
        shutil.rmtree(out, ignore_errors=True)
        try:
            recipe = lab.quantize(kind, source, out, prompts=prompts, device=ctx.device, hf_folder=_hf_folder(ctx))
        except lab.NotApplicable as exc:
            store_candidate(ctx.release, parent, Candidate(kind, None, {}, f"not applicable: {exc}"),
                            file_format=BUNDLE_FORMAT)
            ctx.log(f"{kind}: not applicable: {exc}")
            continue
        except Exception as exc:  # one broken technique must not stop the others
            text = (str(exc).strip().splitlines() or [""])[0][:300]
            store_candidate(ctx.release, parent, Candidate(kind, None, {}, f"{type(exc).__name__}: {text}"),
                            file_format=BUNDLE_FORMAT)
            ctx.log(f"{kind}: failed: {type(exc).__name__}: {text}")
            continue
        artifact = _store_bundle(ctx, parent, kind, out, {"kind": kind} | recipe)
        shutil.rmtree(out, ignore_errors=True)
        ctx.log(f"{kind}: {artifact.size_bytes / 1e6:.2f} MB")


def _evaluate(ctx: StageContext, artifact: Artifact, data: TokenisedEvalSet, start: float, share: float,
              reference: Reference | None = None) -> LanguageEvaluation:
    def progress(percent: float, step: str) -> None:
        ctx.progress(start + share * percent / 100, f"{artifact.kind}: {step}")

    return evaluate_decoder(decoder_folder(artifact), data, reference=reference, device=ctx.device,
                            progress=progress)


def evaluate(ctx: StageContext) -> None:
    release = ctx.release
    fp32 = fp32_artifact(release)
    candidates = list(release.artifacts.exclude(kind=Artifact.Kind.ONNX_FP32).order_by("id"))
    share = 80 / (len(candidates) + 1)
    try:
        raw = eval_data(ctx)
        data = tokenise(decoder_folder(fp32), raw.texts, raw.prompts)
        original = _evaluate(ctx, fp32, data, 0, share)
    except ERRORS as exc:
        raise StageFailed(f"evaluation of the fp32 decoder: {exc}") from None
    found: dict[int, dict[str, Measurement]] = {}
    for index, artifact in enumerate(candidates, start=1):
        if not artifact.error:
            try:
                found[artifact.pk] = _evaluate(ctx, artifact, data, index * share, share, original.reference).metrics
            except ERRORS as exc:
                candidate_failed(artifact, f"evaluation: {exc}")
    timed = [fp32, *(artifact for artifact in candidates if artifact.pk in found)]
    ctx.progress(80, f"timing {len(timed)} decoders together, interleaved")
    try:
        speeds = time_decoders([Decoder(decoder_folder(a), threads=SESSION_THREADS, device=ctx.device)
                                for a in timed], data.prompts)
    except ERRORS as exc:
        raise StageFailed(f"timing the decoders: {exc}") from None
    metrics_of = {artifact.pk: metrics for artifact, metrics in zip(timed, speeds, strict=True)}
    save_metrics(release, fp32, original.metrics | metrics_of[fp32.pk])
    ctx.log(f"{fp32.kind}: {_summary(original.metrics | metrics_of[fp32.pk])}")
    measured = []
    for artifact in candidates:
        metrics = found[artifact.pk] | metrics_of[artifact.pk] if artifact.pk in found else None
        if metrics is not None:
            save_metrics(release, artifact, metrics)
        measured.append((Candidate(artifact.kind, Path(artifact.sha256) if artifact.sha256 else None,
                                   artifact.recipe, artifact.error or None), metrics))
        ctx.log(f"{artifact.kind}: " + (artifact.error or _summary(metrics)))
    choice = choose(original.metrics | metrics_of[fp32.pk], measured,
                    compression_policy(ctx.policy, ctx.version.metadata), task="language_model")
    record_choice(release, fp32, candidates, choice)
    ctx.log(f"chosen: {choice.summary}")
    _compare_with_production(ctx, data, original)


def _summary(metrics: dict[str, Measurement] | None) -> str:
    if not metrics:
        return "not measured"
    parts = [f"perplexity {metrics['perplexity'].value:.4g}"]
    if "greedy_exact_match" in metrics:
        parts.append(f"greedy agreement {metrics['greedy_exact_match'].value:.2f}")
    parts += [f"{metrics['tokens_per_s'].value:.0f} tokens/s", f"TTFT p50 {metrics['ttft_p50_ms'].value:.3g} ms"]
    for name, label in (("latency_ratio", "generation time"), ("ttft_ratio", "TTFT")):
        if name in metrics:
            interval = RatioInterval(*(metrics[f"{name}{end}"].value for end in ("", "_low", "_high")))
            parts.append(f"{label} {interval.text()} of the fp32 decoder's")
    parts.append(f"{metrics['size_bytes'].value / 1e6:.2f} MB")
    return ", ".join(parts)


def _compare_with_production(ctx: StageContext, data: TokenisedEvalSet, original: LanguageEvaluation) -> None:
    active = (Deployment.objects.filter(service__environment__name="production", role=Deployment.Role.ACTIVE,
                                        release__version__model=ctx.model)
              .exclude(release=ctx.release).select_related("release").first())
    if active is None:
        return
    ctx.progress(92, "measuring the release in production on the same data")
    served = serving_artifact(Release.objects.select_related("chosen_artifact", "version__artifact")
                              .get(pk=active.release_id))
    try:
        production = _evaluate(ctx, served, data, 92, 8, original.reference)
    except ERRORS as exc:
        ctx.log(f"the release in production (#{active.release_id}) could not be measured on this data: {exc}")
        return
    save_metrics(ctx.release, None, {f"production_{name}": m for name, m in production.metrics.items()})
