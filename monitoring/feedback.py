"""Ground-truth labels posted later, by prediction id, joined with the collected predictions in bulk.

Each batch is answered with counts; a label is stored at most once per prediction (a unique
constraint, and inserts that skip conflicts), so a batch sent twice never counts twice.
"""

import math
from collections.abc import Sequence

from monitoring.models import Label, Prediction

MAX_BATCH = 10000
MAX_ID_LENGTH = 64


class MalformedBatch(ValueError):
    """The body is not a batch of labels at all (the API answers 400)."""


def batch_items(document: object) -> Sequence[object]:
    """The items of a body: a JSON array, or an object {"labels": [...]}."""
    items = document.get("labels") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise MalformedBatch('send a JSON array of {"prediction_id": ..., "label": ...}, or {"labels": [...]}')
    if len(items) > MAX_BATCH:
        raise MalformedBatch(f"{len(items)} labels in one batch; at most {MAX_BATCH}")
    return items


def _valid(item: object) -> tuple[str, float] | None:
    if not isinstance(item, dict) or set(item) != {"prediction_id", "label"}:
        return None
    pid, label = item["prediction_id"], item["label"]
    if not isinstance(pid, str) or not 0 < len(pid) <= MAX_ID_LENGTH:
        return None
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        return None
    return pid, float(label)


def ingest(items: Sequence[object]) -> dict[str, int]:
    """Store the labels of known, unlabelled predictions; count the rest by why they were not stored."""
    counts = {"accepted": 0, "unknown": 0, "duplicate": 0, "invalid": 0}
    labels: dict[str, float] = {}
    for item in items:
        valid = _valid(item)
        if valid is None:
            counts["invalid"] += 1
        elif valid[0] in labels:
            counts["duplicate"] += 1
        else:
            labels[valid[0]] = valid[1]
    known = dict(Prediction.objects.filter(prediction_id__in=list(labels)).values_list("prediction_id", "pk"))
    counts["unknown"] = len(labels) - len(known)
    labelled = set(Label.objects.filter(prediction_id__in=list(known.values())).values_list("prediction_id",
                                                                                              flat=True))
    new = [Label(prediction_id=pk, value=labels[pid]) for pid, pk in known.items() if pk not in labelled]
    Label.objects.bulk_create(new, ignore_conflicts=True, batch_size=2000)
    counts["duplicate"] += len(known) - len(new)
    counts["accepted"] = len(new)
    return counts
