"""evaluate: the full-precision model and every candidate on the same held-out data, then the choice.

Each candidate is measured against the labels and against the original's own outputs (parity),
then all are timed together, interleaved, so their latencies compare with an interval
(workers.ml.timing); workers.ml.select chooses, and every other one's reason is recorded.
When a release of the model serves in production, its model is measured on this data too.
"""

from releases.candidates import serving_artifact
from releases.gates import TASK_METRIC
from releases.models import Artifact, Deployment, Release
from releases.storage import get_store
from workers.compression import (
    candidate_failed,
    candidate_of,
    compression_policy,
    fp32_artifact,
    record_choice,
    save_metrics,
)
from workers.context import StageContext, StageFailed
from workers.ml.evalset import EvalSet, load_evalset
from workers.ml.evaluate import Evaluation, EvaluationError, Measurement, evaluate, memory_feeds
from workers.ml.memory import MemoryProbeError, peak_memories
from workers.ml.select import choose
from workers.ml.timing import latency_figures
from workers.ml.validate import ModelInvalid


def _evaluate(ctx: StageContext, artifact: Artifact, evalset: EvalSet, start: float, share: float,
              reference: Evaluation | None = None, latency_runs: int = 0) -> Evaluation:
    def progress(percent: float, step: str) -> None:
        ctx.progress(start + share * percent / 100, f"{artifact.kind}: {step}")

    return evaluate(get_store().local_path(artifact.sha256), evalset, ctx.model.task, device=ctx.device,
                    progress=progress, reference_outputs=None if reference is None else reference.outputs,
                    latency_runs=latency_runs, measure_memory=latency_runs > 0)


def _timed(ctx: StageContext, evalset: EvalSet, artifacts: list[Artifact]) -> list[dict[str, Measurement]]:
    """Latency of every artifact (the original first), timed interleaved: percentiles, and each
    candidate's ratio to the original with its interval; and each one's peak memory."""
    paths = [get_store().local_path(a.sha256) for a in artifacts]
    found, rounds = latency_figures(paths, evalset, device=ctx.device)
    ctx.progress(85, "measuring peak memory, each model in a fresh process")
    try:
        memory: list[int | None] = list(peak_memories(paths, memory_feeds(paths[0], evalset), ctx.device))
    except MemoryProbeError as exc:
        ctx.log(f"peak memory not measured: {exc}")
        memory = [None] * len(paths)
    for figures, peak in zip(found, memory, strict=True):
        if peak is not None:
            figures["peak_memory_bytes"] = Measurement(float(peak), "bytes")
    ctx.log(f"latency timed interleaved: {rounds} rounds of every model on the same samples")
    return found


def run(ctx: StageContext) -> None:
    evalset = load_evalset(ctx.eval_data_path)
    release = ctx.release
    fp32 = fp32_artifact(release)
    candidates = list(release.artifacts.exclude(kind=Artifact.Kind.ONNX_FP32).order_by("id"))
    share = 75 / (len(candidates) + 1)
    try:
        original = _evaluate(ctx, fp32, evalset, 0, share)
    except (EvaluationError, ModelInvalid) as exc:
        raise StageFailed(str(exc)) from None
    evaluated: list[tuple[Artifact, dict[str, Measurement] | None]] = []
    for index, artifact in enumerate(candidates, start=1):
        metrics = None
        if not artifact.error:
            try:
                metrics = _evaluate(ctx, artifact, evalset, index * share, share, reference=original).metrics
            except (EvaluationError, ModelInvalid) as exc:
                candidate_failed(artifact, f"evaluation: {exc}")
        evaluated.append((artifact, metrics))
    ctx.progress(75, "timing every model interleaved on the same samples")
    timed = [(fp32, original.metrics)] + [(a, m) for a, m in evaluated if m is not None]
    for (artifact, metrics), latency in zip(timed, _timed(ctx, evalset, [a for a, _ in timed]), strict=True):
        metrics.update(latency)
        save_metrics(release, artifact, metrics)
    measured = []
    for artifact, metrics in evaluated:
        measured.append((candidate_of(artifact), metrics))
        ctx.log(f"{artifact.kind}: " + (artifact.error or _summary(ctx.model.task, metrics)))
    choice = choose(original.metrics, measured, compression_policy(ctx.policy, ctx.version.metadata),
                    task=ctx.model.task)
    record_choice(release, fp32, candidates, choice)
    ctx.log(f"chosen: {choice.summary}")
    ctx.progress(92, "measuring the release in production on the same data")
    _compare_with_production(ctx, evalset, original)


def _summary(task: str, metrics: dict | None) -> str:
    name = TASK_METRIC[task][0]
    if not metrics:
        return "not measured"
    quality = metrics.get(name) or metrics.get("parity_cosine_mean") or metrics.get("top1_agreement")
    return (f"{name} {quality.value:.4f}, " if quality else "") + \
        f"p50 {metrics['latency_p50_ms'].value:.3f} ms, {metrics['size_bytes'].value / 1e6:.2f} MB"


def _compare_with_production(ctx: StageContext, evalset: EvalSet, original: Evaluation) -> None:
    active = (Deployment.objects.filter(service__environment__name="production", role=Deployment.Role.ACTIVE,
                                        release__version__model=ctx.model)
              .exclude(release=ctx.release).select_related("release").first())
    if active is None:
        return
    served = serving_artifact(Release.objects.select_related("chosen_artifact", "version__artifact")
                              .get(pk=active.release_id))
    try:
        production = _evaluate(ctx, served, evalset, 92, 8, reference=original, latency_runs=50)
    except (EvaluationError, ModelInvalid) as exc:
        ctx.log(f"the release in production (#{active.release_id}) could not be measured on this data: {exc}")
        return
    save_metrics(ctx.release, None, {f"production_{name}": m for name, m in production.metrics.items()})
    ctx.log(f"production (#{active.release_id}) on this data: {_summary(ctx.model.task, production.metrics)}")
