"""Collecting from every running model server: predictions (for joining late labels), abnormal
outputs, crashes and input summaries, turned into WatchSamples with drift points; and its serving
figures (monitoring.serving).

The server's figures are cumulative since it started (``boot``); a sample holds the difference
from the previous collection. Input counts gather until DRIFT_MIN_ROWS rows, then one drift point
is measured against the evaluation reference and they start over.
"""

import logging
from datetime import UTC, datetime

import requests
from django.db import transaction
from django.utils import timezone

from monitoring.drift import feature_drift
from monitoring.models import CollectState, Prediction, WatchSample
from monitoring.serving import record_serving
from releases.models import Deployment

log = logging.getLogger(__name__)
DRIFT_MIN_ROWS = 50
FETCH_TIMEOUT_S = 5
TOTALS = ("rows", "nan", "inf", "out_of_range", "crashes")


def fetch(endpoint: str, after: int, session: requests.Session) -> dict:
    answer = session.get(f"{endpoint}/v1/monitoring", params={"after": after}, timeout=FETCH_TIMEOUT_S)
    answer.raise_for_status()
    return answer.json()


def _totals(report: dict) -> dict[str, int]:
    abnormal = report.get("abnormal", {})
    return {"rows": report["rows"], "crashes": report["crashes"],
            **{kind: abnormal.get(kind, 0) for kind in ("nan", "inf", "out_of_range")}}


def _minus(now: list[list[int]], before: list[list[int]]) -> list[list[int]]:
    if [len(c) for c in now] != [len(c) for c in before]:
        return now
    return [[a - b for a, b in zip(x, y, strict=True)] for x, y in zip(now, before, strict=True)]


def _plus(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    if [len(c) for c in a] != [len(c) for c in b]:
        return b
    return [[x + y for x, y in zip(p, q, strict=True)] for p, q in zip(a, b, strict=True)]


def _store_predictions(deployment: Deployment, entries: list) -> int:
    rows = [Prediction(prediction_id=str(pid)[:64], environment_id=deployment.service.environment_id,
                       release_id=deployment.release_id, at=datetime.fromtimestamp(at, UTC), value=float(value))
            for _seq, pid, at, value in entries if value is not None]
    Prediction.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(rows)


def apply_report(deployment: Deployment, report: dict) -> WatchSample | None:
    """Fold one /v1/monitoring answer into the records; the sample it made, if anything happened."""
    with transaction.atomic():
        state, _ = CollectState.objects.select_for_update().get_or_create(deployment=deployment)
        restarted = report["boot"] != state.boot
        totals = _totals(report)
        before = dict.fromkeys(TOTALS, 0) if restarted else state.totals
        delta = {key: max(totals[key] - before.get(key, 0), 0) for key in TOTALS}
        counts = [f["counts"] for f in report["features"]]
        fresh = counts if restarted or not state.counts else _minus(counts, state.counts)
        pending = _plus(state.pending, fresh) if state.pending else fresh
        pending_rows = state.pending_rows + delta["rows"]
        _store_predictions(deployment, report["predictions"])
        sample = WatchSample(environment_id=deployment.service.environment_id, release_id=deployment.release_id,
                             at=timezone.now(), rows=delta["rows"], nan=delta["nan"], inf=delta["inf"],
                             out_of_range=delta["out_of_range"], crashes=delta["crashes"])
        if pending_rows >= DRIFT_MIN_ROWS and report["features"]:
            names = [f["name"] for f in report["features"]]
            sample.drift_features, sample.drift_psi, sample.drift_ks = feature_drift(
                names, [f["reference"] for f in report["features"]], pending)
            pending, pending_rows = [], 0
        happened = any(delta.values()) or sample.drift_psi is not None
        if happened:
            sample.save()
        state.boot, state.totals, state.counts = report["boot"], totals, counts
        state.pending, state.pending_rows = pending, pending_rows
        state.after = report["last_seq"] if report["predictions"] == [] else report["predictions"][-1][0]
        state.save()
    return sample if happened else None


def collect_one(deployment: Deployment, session: requests.Session) -> WatchSample | None:
    state = CollectState.objects.filter(deployment=deployment).first()
    after = state.after if state else 0
    report = fetch(deployment.endpoint, after, session)
    if state is not None and report["boot"] != state.boot and after:
        report = fetch(deployment.endpoint, 0, session)  # the server restarted: its log starts over
    sample = apply_report(deployment, report)
    record_serving(deployment, session, FETCH_TIMEOUT_S)
    return sample


def collect_all() -> dict[str, int]:
    """One collection from every deployment that is not stopped; a server that does not answer is skipped."""
    done = {"collected": 0, "unreachable": 0}
    running = (Deployment.objects.exclude(role=Deployment.Role.STOPPED).exclude(endpoint="")
               .select_related("service").order_by("id"))
    with requests.Session() as session:
        for deployment in running:
            try:
                collect_one(deployment, session)
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("monitoring: deployment %s at %s not collected: %s", deployment.pk,
                            deployment.endpoint, exc)
                done["unreachable"] += 1
            else:
                done["collected"] += 1
    return done
