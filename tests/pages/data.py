"""Rows the page tests show: models, versions, releases with stages, candidates and metrics,
deployments, traffic changes and serving samples, made directly in the database."""

import hashlib
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User

from releases.models import (
    Artifact,
    Deployment,
    Environment,
    GateCheck,
    Metric,
    Model,
    ModelVersion,
    Release,
    ReleasePolicy,
    Service,
    ServingSample,
    StageRun,
    TrafficChange,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
STAGES_AT_GATE = [("validate", "succeeded"), ("evaluate", "succeeded"), ("gate", "waiting")]
STAGES_DONE = [("validate", "succeeded"), ("evaluate", "succeeded"), ("gate", "succeeded")]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_model(name: str = "digits", task: str = "classification", **policy: object) -> Model:
    model = Model.objects.create(name=name, task=task)
    ReleasePolicy.objects.create(model=model, **policy)
    return model


def make_version(model: Model, label: str, author: User, size: int = 1_000_000) -> ModelVersion:
    artifact = Artifact.objects.create(sha256=sha(f"{model.name}:{label}"), size_bytes=size, kind="original",
                                       file_format="onnx", filename="model.onnx")
    eval_data = Artifact.objects.create(sha256=sha(f"{model.name}:{label}:eval"), size_bytes=1000, kind="eval-data",
                                        file_format="npz", filename="eval.npz")
    return ModelVersion.objects.create(model=model, label=label, git_commit=COMMIT, artifact=artifact,
                                       eval_data=eval_data, author=author)


def make_release(version: ModelVersion, status: str = "awaiting_approval",
                 stages: list[tuple[str, str]] = STAGES_AT_GATE, metrics: dict[str, float] | None = None,
                 **fields: object) -> Release:
    """A release of `version` with its stages and release-level metrics (no candidate chosen)."""
    release = Release.objects.create(version=version, status=status, **fields)
    StageRun.objects.bulk_create(StageRun(release=release, name=name, position=i, status=stage_status,
                                          worker_host="worker-1" if stage_status != "pending" else "",
                                          device="cpu" if stage_status != "pending" else "")
                                 for i, (name, stage_status) in enumerate(stages))
    Metric.objects.bulk_create(Metric(release=release, name=name, value=value, unit=unit_of(name))
                               for name, value in (metrics or {}).items())
    return release


def unit_of(name: str) -> str:
    return "ms" if name.endswith("_ms") else "B" if name.endswith("_bytes") else ""


def add_candidate(release: Release, kind: str, size: int, figures: dict[str, float], *, error: str = "",
                  reason: str = "", chosen: bool = False) -> Artifact:
    artifact = Artifact.objects.create(sha256=sha(f"{release.pk}:{kind}"), size_bytes=size, kind=kind,
                                       file_format="onnx", parent=release.version.artifact, release=release,
                                       recipe={"method": kind}, error=error)
    Metric.objects.bulk_create(Metric(release=release, artifact=artifact, name=name, value=value, unit=unit_of(name))
                               for name, value in figures.items())
    if reason:
        release.choice_reasons[str(artifact.pk)] = reason
    if chosen:
        release.chosen_artifact = artifact
    release.save()
    return artifact


def add_gate_check(release: Release, name: str, comparator: str, threshold: float, measured: float) -> GateCheck:
    passed = measured >= threshold if comparator == ">=" else measured <= threshold
    return GateCheck.objects.create(release=release, name=name, comparator=comparator, threshold=threshold,
                                    measured=measured, passed=passed,
                                    detail=f"{name} {measured:g} {'passes' if passed else 'fails'} "
                                           f"{comparator} {threshold:g}")


def service(environment: str, release: Release) -> Service:
    """The release's model's service in the environment (made on first use, as a first deploy does)."""
    return Service.objects.get_or_create(environment=Environment.objects.get(name=environment),
                                         model=release.version.model)[0]


def deploy(environment: str, release: Release, role: str, percent: int, instance: dict | None = None) -> Deployment:
    return Deployment.objects.create(service=service(environment, release), release=release,
                                     role=role, traffic_percent=percent, image=f"slipway/{release.pk}:latest",
                                     instance=instance or {})


def traffic(environment: str, at: datetime, shares: dict[Release, int], action: str, actor: User | None = None,
            reason: str = "") -> TrafficChange:
    return TrafficChange.objects.create(service=service(environment, next(iter(shares))), at=at,
                                        shares={str(r.pk): pct for r, pct in shares.items()}, action=action,
                                        actor=actor, reason=reason)


def samples(environment: str, release: Release, start: datetime, count: int, step_s: int = 10,
            rps: float = 20.0, error_rate: float = 0.001, p95: float = 12.0) -> list[ServingSample]:
    where = service(environment, release)
    return ServingSample.objects.bulk_create(
        ServingSample(service=where, release=release, at=start + timedelta(seconds=i * step_s),
                      requests_per_s=rps + i % 3, error_rate=error_rate, latency_p95_ms=p95 + i % 2)
        for i in range(count))
