"""Live quality per release over time windows (in SQL), and the series the pages chart."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, BigIntegerField, Count, F, FloatField, Func, Q, Sum
from django.db.models.functions import Abs
from django.utils import timezone

from monitoring.models import Label, WatchSample
from releases.models import Environment, Release, TrafficChange
from releases.pages.queries import CHART_MARKS, from_ms, release_label
from releases.sqltime import EpochMs

WINDOW_LADDER = (5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)  # seconds
MAX_WINDOWS = 60
QUALITY_SPAN = timedelta(days=7)
WATCH_SAMPLES = 600
# Labelled predictions, the right ones (label equal to the logged class or value), mean absolute error.
QUALITY = {"n": Count("id"), "correct": Count("id", filter=Q(value=F("prediction__value"))),
           "mae": Avg(Abs(F("value") - F("prediction__value")), output_field=FloatField())}


class EpochWindow(Func):
    """The number of the `seconds`-long window (since the Unix epoch) a moment falls in."""

    output_field = BigIntegerField()

    def __init__(self, expression: str, seconds: int) -> None:
        self.seconds = int(seconds)
        super().__init__(F(expression))

    def as_postgresql(self, compiler, connection, **extra):  # noqa: ANN001, ANN201
        return self.as_sql(compiler, connection,
                           template=f"FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / {self.seconds})::bigint", **extra)

    def as_sqlite(self, compiler, connection, **extra):  # noqa: ANN001, ANN201
        return self.as_sql(compiler, connection, template=(
            f"CAST((julianday(%(expressions)s) - 2440587.5) * 86400 / {self.seconds} AS INTEGER)"), **extra)


def window_for(span: timedelta) -> int:
    """The shortest window on the ladder that cuts `span` into at most MAX_WINDOWS."""
    seconds = span.total_seconds()
    return next((w for w in WINDOW_LADDER if seconds / w <= MAX_WINDOWS), WINDOW_LADDER[-1])


def quality_windows(labels, window_s: int, group: str = "prediction__release_id") -> list[dict]:  # noqa: ANN001
    """Per group and window: labelled predictions, how many were right, and the mean absolute error."""
    return list(labels.annotate(window=EpochWindow("prediction__at", window_s))
                .values(group, "window").annotate(**QUALITY).order_by("window", group))


def quality_value(row: dict, task: str) -> float:
    """Accuracy for classification, mean absolute error for regression."""
    return row["correct"] / row["n"] if task == "classification" else row["mae"]


def _labels_of(**where: object):  # noqa: ANN202
    return Label.objects.filter(prediction__at__gte=timezone.now() - QUALITY_SPAN, **where)


def _marks(environments: list[int], since: datetime | None) -> list[list]:
    if since is None:
        return []
    marks = (TrafficChange.objects.filter(service__environment_id__in=environments, at__gte=since)
             .annotate(ms=EpochMs("at"))
             .order_by("-at", "-id").values_list("ms", "action")[:CHART_MARKS])
    return [list(mark) for mark in reversed(marks)]


def _series(groups: dict[object, list], names: dict[object, str]) -> list[dict]:
    return [{"label": names.get(key, str(key)), "points": points} for key, points in groups.items()]


def _watch(samples, group: str) -> tuple[dict[int, list], datetime | None]:  # noqa: ANN001
    rows = list(samples.annotate(ms=EpochMs("at")).order_by("-at")
                .values_list("ms", group, "rows", "nan", "inf", "out_of_range", "drift_psi")[:WATCH_SAMPLES])
    rows.reverse()
    groups: dict[int, list] = {}
    for ms, key, n, nan, inf, outside, psi in rows:
        ratio = (nan + inf + outside) / n if n else None
        groups.setdefault(key, []).append([ms, ratio, psi])
    return groups, from_ms(rows[0][0]) if rows else None


def _quality(labels, group: str, task_of: dict[int, str]) -> dict[int, list]:  # noqa: ANN001
    first = labels.order_by("prediction__at").values_list("prediction__at", flat=True).first()
    if first is None:
        return {}
    window = window_for(timezone.now() - first)
    groups: dict[int, list] = {}
    for row in quality_windows(labels, window, group):
        key = row[group]
        groups.setdefault(key, []).append([row["window"] * window * 1000, quality_value(row, task_of.get(key, "")),
                                           row["n"]])
    return groups


def charts_of_environment(environment: Environment) -> dict:
    """One line per release: abnormal-output ratio and drift per collection, live quality per window."""
    watch, since = _watch(WatchSample.objects.filter(environment=environment), "release_id")
    labels = _labels_of(prediction__environment=environment)
    ids = set(watch) | set(labels.values_list("prediction__release_id", flat=True).distinct())
    releases = {r.pk: r for r in Release.objects.filter(pk__in=ids).select_related("version__model")}
    names = {pk: release_label(r) for pk, r in releases.items()}
    quality = _quality(labels, "prediction__release_id", {pk: r.version.model.task for pk, r in releases.items()})
    return _document(watch, quality, names, _marks([environment.pk], since),
                     {r.version.model.task for r in releases.values()})


def charts_of_release(release: Release) -> dict:
    """One line per environment the release served in."""
    watch, since = _watch(WatchSample.objects.filter(release=release), "environment_id")
    labels = _labels_of(prediction__release=release)
    names = dict(Environment.objects.values_list("pk", "name"))
    task = release.version.model.task
    quality = _quality(labels, "prediction__environment_id", dict.fromkeys(names, task))
    return _document(watch, quality, names, _marks(list(watch), since), {task})


def _latest(watch: dict, quality: dict, names: dict) -> list[dict]:
    """Per line: the newest window's quality (and its labels), and the newest drift point."""
    rows = []
    for key in dict.fromkeys([*quality, *watch]):
        window = quality.get(key, [[None, None, 0]])[-1]
        drift = next((p[2] for p in reversed(watch.get(key, [])) if p[2] is not None), None)
        rows.append({"label": names.get(key, str(key)), "quality": window[1], "labels": window[2], "drift": drift})
    return rows


def _document(watch: dict, quality: dict, names: dict, marks: list, tasks: set[str]) -> dict:
    return {"watch": {"series": _series(watch, names), "marks": marks},
            "quality": {"series": _series(quality, names), "marks": marks},
            "latest": _latest(watch, quality, names),
            "metric": "mean absolute error" if tasks == {"regression"} else "accuracy"}


def current_figures(window: timedelta) -> dict[tuple[int, int], dict[str, float]]:
    """(environment id, release id) → live quality, abnormal ratio and latest drift over the last `window`."""
    since = timezone.now() - window
    figures: dict[tuple[int, int], dict[str, float]] = {}
    rows: Iterable[Mapping[str, Any]] = (Label.objects.filter(prediction__at__gte=since)
            .values("prediction__environment_id", "prediction__release_id").annotate(**QUALITY))
    for row in rows:
        key = (row["prediction__environment_id"], row["prediction__release_id"])
        figures.setdefault(key, {}).update(labels=row["n"], accuracy=row["correct"] / row["n"], mae=row["mae"])
    sums: Iterable[Mapping[str, Any]] = (
        WatchSample.objects.filter(at__gte=since).values("environment_id", "release_id")
        .annotate(rows=Sum("rows"), abnormal=Sum(F("nan") + F("inf") + F("out_of_range"))))
    for row in sums:
        if row["rows"]:
            figures.setdefault((row["environment_id"], row["release_id"]), {})["abnormal_ratio"] = (
                row["abnormal"] / row["rows"])
    for env_id, release_id, psi in (WatchSample.objects.filter(at__gte=since, drift_psi__isnull=False)
                                    .order_by("at").values_list("environment_id", "release_id", "drift_psi")):
        if psi is not None:
            figures.setdefault((env_id, release_id), {})["drift_psi"] = psi
    return figures
