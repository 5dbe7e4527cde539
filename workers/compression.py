"""Between the release records and the compression lab: policy, candidates and their artifacts."""

from pathlib import Path

from releases.models import Artifact, Metric, Release, ReleasePolicy
from releases.models.pipeline import CHOSEN
from releases.redact import without_paths
from releases.storage import get_store
from workers.ml.compress import Candidate
from workers.ml.evaluate import Measurement
from workers.ml.policy import KINDS, CompressionPolicy
from workers.ml.select import Choice

FORMAT_SUFFIX = {"onnx": ".onnx", "safetensors": ".safetensors", "pt2": ".pt2"}


def compression_policy(policy: ReleasePolicy, metadata: dict) -> CompressionPolicy:
    """The lab's policy from the model's release policy and the build's metadata (student model)."""
    student = metadata.get("student") or {}
    return CompressionPolicy(
        kinds=tuple(kind for kind in policy.candidates if kind in KINDS),
        max_accuracy_drop=policy.accuracy_budget, max_rmse_increase=policy.accuracy_budget,
        min_cosine=1 - policy.accuracy_budget, prune_sparsity=policy.prune_sparsity,
        max_perplexity_increase=policy.max_perplexity_increase, min_greedy_agreement=policy.min_greedy_agreement,
        distill_temperature=policy.distill_temperature, distill_epochs=policy.distill_epochs,
        max_peak_memory_bytes=None if policy.max_peak_memory_mb is None else int(policy.max_peak_memory_mb * 1e6),
        student_architecture=student.get("architecture"), student_config=student.get("config") or {})


def fp32_artifact(release: Release) -> Artifact:
    """The full-precision ONNX model every candidate derives from: converted, or the original upload."""
    converted = release.artifacts.filter(kind=Artifact.Kind.ONNX_FP32).first()
    return converted or release.version.artifact


def original_with_suffix(release: Release, work_dir: Path) -> Path:
    """The uploaded artifact under a name with its format's suffix (the converters go by it)."""
    artifact = release.version.artifact
    link = work_dir / f"upload{FORMAT_SUFFIX[artifact.file_format]}"
    link.unlink(missing_ok=True)
    link.symlink_to(get_store().local_path(artifact.sha256))
    return link


def store_candidate(release: Release, parent: Artifact, candidate: Candidate, *,
                    file_format: str = "onnx") -> Artifact:
    sha256, size = get_store().put_file(candidate.path) if candidate.path else ("", 0)
    suffix = ".tar" if file_format.endswith("-tar") else f".{file_format}"
    return Artifact.objects.create(sha256=sha256, size_bytes=size, kind=candidate.kind, file_format=file_format,
                                   filename=f"{candidate.kind}{suffix}", parent=parent, release=release,
                                   recipe=candidate.recipe, error=without_paths(candidate.error or ""))


def candidate_failed(artifact: Artifact, error: str) -> None:
    """Record why a candidate could not be measured; people read it, so server paths are cut (releases.redact)."""
    artifact.error = without_paths(error)
    artifact.save(update_fields=["error"])


def candidate_of(artifact: Artifact) -> Candidate:
    path = get_store().local_path(artifact.sha256) if artifact.sha256 else None
    return Candidate(kind=artifact.kind, path=path, recipe=artifact.recipe, error=artifact.error or None)


def save_metrics(release: Release, artifact: Artifact | None, metrics: dict[str, Measurement]) -> None:
    Metric.objects.filter(release=release, artifact=artifact).delete()
    Metric.objects.bulk_create(Metric(release=release, artifact=artifact, name=name, value=m.value, unit=m.unit)
                               for name, m in sorted(metrics.items()))


def record_choice(release: Release, original: Artifact, candidates: list[Artifact], choice: Choice) -> Artifact:
    """Store the chosen artifact (the original when no candidate wins) and every model's reason."""
    chosen = original if choice.index is None else candidates[choice.index]
    reasons = {str(original.pk): choice.original_reason} | {
        str(a.pk): r for a, r in zip(candidates, choice.reasons, strict=True)}
    reasons[str(chosen.pk)] = f"{CHOSEN}{choice.summary}"
    release.chosen_artifact, release.choice_reasons = chosen, reasons
    release.save(update_fields=["chosen_artifact", "choice_reasons", "updated_at"])
    return chosen
