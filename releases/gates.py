"""The automatic gate: a release's measured figures against its model's policy and production."""

from dataclasses import dataclass

from releases.models import Deployment, GateCheck, Metric, Release, ReleasePolicy

# The task metric of each kind of model, and whether higher is better.
TASK_METRIC = {"classification": ("accuracy", True), "regression": ("rmse", False),
               "embedding": ("cosine_mean", True), "language_model": ("perplexity", False)}


@dataclass(frozen=True)
class Check:
    name: str
    comparator: str
    threshold: float
    measured: float | None

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.threshold if self.comparator == ">=" else self.measured <= self.threshold

    @property
    def detail(self) -> str:
        if self.measured is None:
            return f"{self.name} was not measured"
        verdict = "passes" if self.passed else "fails"
        return f"{self.name} {self.measured:.6g} {verdict} {self.comparator} {self.threshold:.6g}"


def release_figures(release: Release) -> dict[str, float]:
    """The figures of the release's chosen model (metrics not tied to a candidate, or the chosen one's)."""
    rows = Metric.objects.filter(release=release)
    rows = rows.filter(artifact=release.chosen_artifact) if release.chosen_artifact_id else rows.filter(
        artifact__isnull=True)
    return {m.name: m.value for m in rows}


def production_figures(release: Release) -> tuple[Release | None, dict[str, float]]:
    """The release serving in production and its figures — measured on this release's data when the
    evaluate stage did so (metrics named production_*), else its own."""
    active = (Deployment.objects.filter(service__environment__name="production", role="active",
                                        release__version__model_id=release.version.model_id)
              .exclude(release=release).select_related("release").first())
    if active is None:
        return None, {}
    prefix = "production_"
    same_data = {m.name[len(prefix):]: m.value for m in Metric.objects.filter(
        release=release, artifact__isnull=True, name__startswith=prefix)}
    return active.release, same_data or release_figures(active.release)


def checks_for(release: Release, policy: ReleasePolicy) -> list[Check]:
    figures = release_figures(release)
    metric, higher_is_better = TASK_METRIC[release.version.model.task]
    checks = []
    for field, name, comparator in (("min_accuracy", "accuracy", ">="), ("max_rmse", "rmse", "<="),
                                    ("min_cosine", "cosine_mean", ">="),
                                    ("max_latency_p95_ms", "latency_p95_ms", "<=")):
        threshold = getattr(policy, field)
        if threshold is not None:
            checks.append(Check(name, comparator, threshold, figures.get(name)))
    if policy.max_size_mb is not None:
        size = figures.get("size_bytes")
        checks.append(Check("size_mb", "<=", policy.max_size_mb, None if size is None else size / 1e6))
    prod_release, prod = production_figures(release)
    if prod_release is not None and metric in prod:
        budget = policy.max_regression_vs_production
        threshold = prod[metric] - budget if higher_is_better else prod[metric] + budget
        checks.append(Check(f"{metric} vs production #{prod_release.pk}", ">=" if higher_is_better else "<=",
                            threshold, figures.get(metric)))
    return checks


def run_automatic_gate(release: Release, policy: ReleasePolicy) -> list[Check]:
    """Evaluate and store the checks (replacing an earlier attempt's). Returns them."""
    checks = checks_for(release, policy)
    GateCheck.objects.filter(release=release, gate="release").delete()
    GateCheck.objects.bulk_create(
        GateCheck(release=release, gate="release", name=c.name, comparator=c.comparator, threshold=c.threshold,
                  measured=c.measured, passed=c.passed, detail=c.detail)
        for c in checks
    )
    return checks
