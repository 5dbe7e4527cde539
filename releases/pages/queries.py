"""Read-only queries behind the pages. Each answers one section in a fixed number of queries,
however many rows the database holds: long lists are cut or paginated, figures are picked in SQL."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Case, CharField, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.formats import localize

from releases.approvals import GATE_STAGES
from releases.gates import TASK_METRIC
from releases.models import (
    Approval,
    Artifact,
    Deployment,
    Environment,
    Metric,
    Model,
    ModelVersion,
    Release,
    Service,
    ServingSample,
    TrafficChange,
)
from releases.models.pipeline import ReleaseStatus, StageStatus
from releases.pages.display import figure, stamp
from releases.roles import ADMIN, APPROVER, AnyUser, groups_of, has_role
from releases.sqltime import EpochMs
from slipway.prepared import Prepared, Rows

# The figures of a release are those of its chosen candidate, or the unattached ones when none was chosen.
RELEASE_LEVEL = Q(artifact_id=F("release__chosen_artifact_id")) | Q(artifact__isnull=True,
                                                                    release__chosen_artifact__isnull=True)
TREND_VERSIONS = 100  # versions drawn on a model's trend charts
NOT_APPLICABLE = "not applicable: "  # how workers.ml.compress words a candidate the build cannot have
SERVING_SAMPLES = 600  # newest samples drawn on an environment's charts
CHART_MARKS = 100  # traffic changes marked on them

# A release as the lists show it: only the columns they show (whole rows of three tables cost more to read
# than the queries take to run).
RELEASE_ROWS = Release.objects.select_related("version__model", "version__author").only(
    "status", "failure_reason", "created_at", "updated_at", "version__label", "version__model__name",
    "version__author__username")


def paginate(request: HttpRequest, rows: QuerySet | Rows, per_page: int, param: str = "page",
             moments: tuple[str, ...] = ()) -> Page:
    """One page of `rows` (two queries, count and page, whatever their number), each stamped with the
    `moments` it shows (see display.stamp), with `prev_url` and `next_url`: this page's query string
    with `param` moved, other parameters kept."""
    page = Paginator(rows, per_page).get_page(request.GET.get(param))
    page.object_list = stamp(page.object_list, *moments)

    def url(number: int) -> str:
        query = request.GET.copy()
        query[param] = str(number)
        return "?" + query.urlencode()

    page.prev_url = url(page.previous_page_number()) if page.has_previous() else None  # type: ignore[attr-defined]
    page.next_url = url(page.next_page_number()) if page.has_next() else None  # type: ignore[attr-defined]
    return page


def release_label(release: Release) -> str:
    return f"#{release.pk} {release.version}"


def task_metric(model: Model) -> tuple[str, bool]:
    """The name of the model's task metric, and whether higher is better."""
    return TASK_METRIC[model.task]


def waiting_rows(user_id: int) -> QuerySet[Release]:
    """Releases waiting at an approval gate, not built by this user and not decided on there by them,
    each with `waiting_gate`, oldest first (the rules of releases.approvals.why_not, asked of the database).

    The gate a release waits at is named by its waiting gate stage, joined once: cheaper to build than a
    subquery per gate, which is most of this page's time."""
    waiting_gate = Case(*(When(stages__name=stage, then=Value(gate)) for gate, stage in GATE_STAGES.items()),
                        output_field=CharField())
    decided_there = Approval.objects.filter(release=OuterRef("pk"), user=user_id, gate=OuterRef("waiting_gate"))
    return (RELEASE_ROWS.filter(status=ReleaseStatus.AWAITING_APPROVAL, stages__status=StageStatus.WAITING,
                                stages__name__in=list(GATE_STAGES.values()))
            .exclude(version__author=user_id).annotate(waiting_gate=waiting_gate).exclude(Exists(decided_there))
            .order_by("created_at", "id"))


WAITING_LIMIT = 20


@Prepared
def waiting_for_admin(user_id: int) -> QuerySet[Release]:
    return waiting_rows(user_id)[:WAITING_LIMIT]


def in_approver_group(user_id: int) -> Q:
    """The release's model names one of the user's groups as its approver group."""
    return Q(version__model__policy__approver_group__in=User.groups.through.objects.filter(user=user_id)
             .values("group_id"))


@Prepared
def waiting_for_approver(user_id: int) -> QuerySet[Release]:
    return (waiting_rows(user_id).filter(in_approver_group(user_id)
                                         | Q(version__model__policy__approver_group__isnull=True))
            [:WAITING_LIMIT])


@Prepared
def waiting_for_member(user_id: int) -> QuerySet[Release]:
    return waiting_rows(user_id).filter(in_approver_group(user_id))[:WAITING_LIMIT]


def waiting_for(user: AnyUser) -> list[Release]:
    """Releases waiting at an approval gate that this user may approve and has not decided on there
    (at most WAITING_LIMIT, oldest first). Each has `.at_production`."""
    if not isinstance(user, User):
        return []
    if has_role(user, ADMIN):
        rows = waiting_for_admin
    else:  # a group of the user's is the model's approver group; an approver also approves for models with none
        rows = waiting_for_approver if APPROVER in groups_of(user) else waiting_for_member
    waiting = stamp(rows.list(user.pk), "created_at")
    for release in waiting:
        release.at_production = release.waiting_gate == "production"
    return waiting


@Prepared
def environments() -> QuerySet[Environment]:
    return Environment.objects.all()


@Prepared
def serving_deployments() -> QuerySet[Deployment]:
    return (Deployment.objects.filter(traffic_percent__gt=0).select_related("service", "release__version__model")
            .order_by("release__version__model__name", "-traffic_percent", "-id"))


def live_deployments() -> list[Environment]:
    """Every environment, each with `.serving`: its deployments that take traffic, largest share first."""
    rows = environments.list()
    serving: dict[int, list[Deployment]] = {env.pk: [] for env in rows}
    for deployment in serving_deployments.list():
        serving[deployment.service.environment_id].append(deployment)
    for env in rows:
        env.serving = serving[env.pk]  # type: ignore[attr-defined]
    return rows


@Prepared
def trend_versions(model_id: int) -> QuerySet[ModelVersion, tuple[int, str]]:
    return ModelVersion.objects.filter(model=model_id).order_by("-created_at", "-id").values_list("id", "label")[
        :TREND_VERSIONS]


def model_trend(model: Model) -> list[dict]:
    """The task metric, p95 latency and size of the newest versions, oldest first; a version with
    several releases shows its latest one's figures. (Their figures are asked by the versions' ids: a
    subquery for them costs a scan of every release.)"""
    metric, _ = task_metric(model)
    versions = trend_versions.list(model.pk)
    figures: dict[int, dict[str, float]] = {}
    rows = (Metric.objects.filter(RELEASE_LEVEL, release__version_id__in=[pk for pk, _ in versions],
                                  name__in=[metric, "latency_p95_ms", "size_bytes"])
            .order_by("release_id").values_list("release__version_id", "name", "value"))
    for version_id, name, value in rows:
        figures.setdefault(version_id, {})[name] = value
    return [{"label": label, "task": figures.get(pk, {}).get(metric),
             "p95": figures.get(pk, {}).get("latency_p95_ms"), "size": figures.get(pk, {}).get("size_bytes")}
            for pk, label in reversed(versions)]


@dataclass
class Candidate:
    """One row of a release's candidates table: an artifact with its measured figures."""

    artifact: Artifact
    figures: dict[str, float]
    shown: dict[str, str]  # the figures as display.figure writes them, with their units
    task_value: float | None
    reason: str
    chosen: bool
    reference: bool  # the original the candidates are compared with
    speed: tuple[float, float, float] | None = None  # latency relative to the original's: ratio, low, high

    @property
    def speed_resolved(self) -> bool:
        """The interval lies wholly on one side of the original's latency."""
        return self.speed is not None and self.speed[1] != self.speed[2] and (self.speed[2] < 1 or self.speed[1] > 1)

    @property
    def failed(self) -> bool:
        return bool(self.artifact.error) and not self.not_applicable

    @property
    def size(self) -> str:
        """The artifact's size, "—" when it failed before it had one."""
        return "—" if self.artifact.error and not self.artifact.size_bytes else filesizeformat(self.artifact.size_bytes)

    @property
    def peak_memory(self) -> str:
        return filesizeformat(self.figures["peak_memory_bytes"]) if self.figures.get("peak_memory_bytes") else "—"

    @property
    def not_applicable(self) -> bool:
        """The build gave nothing to make this kind from (e.g. no student to distil): not a failure."""
        return self.artifact.error.startswith(NOT_APPLICABLE)

    # The table's cells as text, written here rather than by template tags and filters: the table is the
    # heaviest part of the release page's template, and each row would test and format a dozen figures there.

    @property
    def css_class(self) -> str:
        return ("chosen" if self.chosen else "") + (" failed" if self.failed else "")

    @property
    def name(self) -> str:
        return "original" if self.reference else self.artifact.kind

    @property
    def recipe_text(self) -> str:
        """How it was made, "key: value, ..." (values as a template writes them)."""
        return ", ".join(f"{key}: {localize(value)}" for key, value in self.artifact.recipe.items())

    @property
    def p50(self) -> str:
        return self.shown.get("latency_p50_ms") or "—"

    @property
    def p95(self) -> str:
        return self.shown.get("latency_p95_ms") or "—"

    @property
    def speed_text(self) -> str:
        """The ratio to the original's latency, times sign first, and its interval (none for a point)."""
        if self.speed is None:
            return ""
        ratio, low, high = self.speed
        return f"\u00d7{ratio:.2f}" + (f" ({low:.2f}\u2013{high:.2f})" if low != high else "")

    @property
    def speed_verdict(self) -> str:
        """"faster" or "slower" when the interval says so, else nothing."""
        if not self.speed_resolved or self.speed is None:
            return ""
        return "faster" if self.speed[2] < 1 else "slower"

    @property
    def task_text(self) -> str:
        return "—" if self.task_value is None else f"{self.task_value:.4g}"

    @property
    def parity(self) -> list[str]:
        """How closely it answers as the original does, in as many of these measures as it has."""
        figures, parts = self.figures, []
        if figures.get("parity_max_abs_diff") is not None:
            parts.append(f"max |Δ| {figures['parity_max_abs_diff']:.3g}")
        if figures.get("top1_agreement") is not None:
            parts.append(f"top-1 {figures['top1_agreement']:.4g}")
        if figures.get("cosine_min") is not None:
            parts.append(f"cos min {figures['cosine_min']:.4g}")
        if figures.get("greedy_exact_match") is not None:
            kl = figures.get("kl_to_fp32")
            parts += [f"greedy {figures['greedy_exact_match']:.3g}", "KL " + ("" if kl is None else f"{kl:.2g}"),
                      self.shown.get("tokens_per_s", "")]
        return parts


@dataclass
class CandidateTable:
    rows: list[Candidate]
    metric: str
    higher_is_better: bool
    budget: float
    original_value: float | None = None
    shipped: list[tuple[str, str]] = field(default_factory=list)  # (name, figure) of what the release ships
    relative: bool = False  # the budget is a share of the original's value (a language model's perplexity)

    @property
    def budget_limit(self) -> float | None:
        """The worst task metric a candidate may reach and still be chosen."""
        if self.original_value is None:
            return None
        if self.relative:
            return self.original_value * (1 + self.budget)
        return self.original_value - self.budget if self.higher_is_better else self.original_value + self.budget


@Prepared
def release_metrics(release_id: int) -> QuerySet[Metric, tuple[int | None, str, float, str]]:
    return Metric.objects.filter(release=release_id).values_list("artifact_id", "name", "value", "unit")


def candidate_table(release: Release) -> CandidateTable:
    """The original and every candidate derived from it, from the release's metrics (one query, read as
    tuples), its prefetched `artifacts` and its selected `version__artifact` and `version__model__policy`."""
    metric, higher = task_metric(release.version.model)
    figures: dict[int | None, dict[str, float]] = {}
    shown: dict[int | None, dict[str, str]] = {}
    for artifact_id, name, value, unit in release_metrics.list(release.pk):
        figures.setdefault(artifact_id, {})[name] = value
        shown.setdefault(artifact_id, {})[name] = figure(value, unit)
    original = release.version.artifact
    original_key = original.pk if original.pk in figures else None  # its own figures, or the unattached ones
    base_p50 = figures.get(original_key, {}).get("latency_p50_ms")
    shipped_id = release.shipped_artifact_id

    def row(artifact: Artifact, key: int | None, chosen: bool, reference: bool) -> Candidate:
        values = figures.get(key, {})
        return Candidate(artifact, values, shown.get(key, {}), values.get(metric), release.choice_reason(artifact.pk),
                         chosen=chosen and not release.failed, reference=reference,
                         speed=(1.0, 1.0, 1.0) if reference and base_p50 else speed_of(values, base_p50))

    rows = [row(original, original_key, release.chosen_artifact_id in (None, original.pk), reference=True)]
    rows += [row(a, a.pk, a.pk == release.chosen_artifact_id, reference=False) for a in release.artifacts.all()
             if a.kind not in (Artifact.Kind.ORIGINAL, Artifact.Kind.EVAL_DATA)]
    policy = release.version.model.policy
    shipped = [] if shipped_id is None else list(shown.get(shipped_id, {}).items())
    if release.version.model.task == "language_model":  # judged against the fp32 decoder, relatively
        fp32 = next((a.pk for a in release.artifacts.all() if a.kind == Artifact.Kind.ONNX_FP32), None)
        return CandidateTable(rows=rows, metric=metric, higher_is_better=higher,
                              budget=policy.max_perplexity_increase, relative=True,
                              original_value=figures.get(fp32, {}).get(metric), shipped=shipped)
    return CandidateTable(rows=rows, metric=metric, higher_is_better=higher, budget=policy.accuracy_budget,
                          original_value=figures.get(original_key, {}).get(metric), shipped=shipped)


def speed_of(values: dict[str, float], base_p50: float | None) -> tuple[float, float, float] | None:
    """A candidate's latency relative to the original's: the measured interval (the evaluate stage
    times them interleaved), or the p50 ratio as a point for releases measured before intervals."""
    if "latency_ratio" in values:
        return values["latency_ratio"], values["latency_ratio_low"], values["latency_ratio_high"]
    if base_p50 and "latency_p50_ms" in values:
        ratio = values["latency_p50_ms"] / base_p50
        return ratio, ratio, ratio
    return None


ELIGIBLE_SHOWN = 20


@Prepared
def eligible(release_id: int, author_id: int, group: str, gate: str) -> QuerySet[User]:
    decided_there = Approval.objects.filter(release=release_id, gate=gate, user=OuterRef("pk"))
    return (User.objects.filter(groups__name=group, is_active=True).exclude(pk=author_id)
            .exclude(Exists(decided_there)).only("username").order_by("username")[:ELIGIBLE_SHOWN])


def eligible_approvers(release: Release, group: str, gate: str) -> list[User]:
    """Members of the approver group who may still decide at `gate`: not the author, not decided there yet.
    Only their usernames are read."""
    return eligible.list(release.pk, release.version.author_id, group, gate)


def serving_series(service: Service, limit: int = SERVING_SAMPLES) -> dict:
    """The newest serving samples per release of a service, and its traffic changes in their time span, as
    the service's charts draw them (times in epoch milliseconds, computed by the database)."""
    samples = list(ServingSample.objects.filter(service=service).annotate(ms=EpochMs("at"))
                   .order_by("-at").values_list("ms", "release_id", "requests_per_s", "error_rate",
                                                "latency_p95_ms")[:limit])
    if not samples:
        return {"series": [], "marks": []}
    samples.reverse()
    labels = {r.pk: release_label(r) for r in Release.objects.filter(pk__in={s[1] for s in samples})
              .select_related("version__model")}
    series: dict[int, list] = {}
    for ms, release_id, rps, errors, p95 in samples:
        series.setdefault(release_id, []).append([ms, rps, errors, p95])
    marks = (TrafficChange.objects.filter(service=service, at__gte=from_ms(samples[0][0]))
             .annotate(ms=EpochMs("at")).order_by("-at", "-id").values_list("ms", "action")[:CHART_MARKS])
    return {"series": [{"label": labels[pk], "points": points} for pk, points in series.items()],
            "marks": [list(mark) for mark in reversed(marks)]}


SINCE_CHANGES = 200  # traffic changes read back to find since when each release serves as it does now


def serving_since(changes: QuerySet[TrafficChange], shares_now: dict[int, int],
                  limit: int = SINCE_CHANGES) -> dict[int, tuple[datetime, bool]]:
    """Release id → (since when it has served as it does now, whether the record reaches back no further):
    since the start of its current stretch of taking traffic, or of taking none (warm) when its share
    is 0 — read off the newest `limit` traffic `changes` in one query, not off when its row last changed."""
    newest = list(changes.order_by("-at", "-id").values_list("at", "shares")[:limit])
    since: dict[int, tuple[datetime, bool]] = {}
    for release_id, share in shares_now.items():
        serving, start = share > 0, None
        for at, shares in newest:
            if (shares.get(str(release_id), 0) > 0) != serving:
                break
            start = at
        else:
            if start is not None:
                since[release_id] = (start, len(newest) == limit)
            continue
        if start is not None:
            since[release_id] = (start, False)
    return since


def share_labels(changes: list[TrafficChange]) -> dict[str, str]:
    """Release id (as TrafficChange.shares keys it) → label, for every release named in `changes`."""
    ids = {int(pk) for change in changes for pk in change.shares}
    return {str(r.pk): release_label(r) for r in Release.objects.filter(pk__in=ids).select_related("version__model")}


def from_ms(ms: int) -> datetime:
    """The moment of an epoch-millisecond figure (EpochMs rounds down, so this is at or before it)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
