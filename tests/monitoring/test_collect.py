"""Folding the serving runtime's reports into records: differences of cumulative figures, restarts,
predictions stored once, and a drift point once enough rows arrived."""

import numpy as np
import pytest

from monitoring.collect import DRIFT_MIN_ROWS, apply_report
from monitoring.models import CollectState, Prediction, WatchSample
from serving.watch import Profile, Watcher

pytestmark = pytest.mark.django_db

PROFILE = Profile.from_document({
    "version": 1, "task": "classification", "outputs": {"p": [0.0, 1.0]},
    "prediction": {"output": "p", "kind": "argmax"},
    "features": [{"input": "x", "index": 0, "edges": [0.5]}, {"input": "x", "index": 1, "edges": [0.5]}],
    "reference": [[50, 50], [50, 50]]})


def answer(watcher: Watcher, pid: str, x: list[float], p: list[float]) -> None:
    watcher.observe(pid, {"x": np.array([x])}, {"p": np.array([p], dtype=np.float32)}, 1)


def test_reports_become_samples_predictions_and_drift_points(serving):
    deployment = serving["active"]
    watcher = Watcher(PROFILE)
    for i in range(30):
        answer(watcher, f"a{i}", [i % 2, 0.9], [0.2, 0.8] if i % 3 else [float("nan"), 0.1])
    first = apply_report(deployment, watcher.report(0))
    assert (first.rows, first.nan, first.inf, first.out_of_range, first.drift_psi) == (30, 10, 0, 0, None)
    assert Prediction.objects.filter(release_id=serving["ids"][1]).count() == 30
    assert Prediction.objects.get(prediction_id="a1").value == 1.0

    for i in range(30):
        answer(watcher, f"b{i}", [i % 2, 0.9], [0.2, 1.5])
    state = CollectState.objects.get(deployment=deployment)
    second = apply_report(deployment, watcher.report(state.after))
    assert (second.rows, second.nan, second.out_of_range) == (30, 0, 30)
    assert DRIFT_MIN_ROWS <= 60  # the first 30 rows and these 30 make one drift point
    assert second.drift_features["x[0]"] == 0.0
    shifted = (1e-4 - 0.5) * np.log(1e-4 / 0.5) + (1 - 0.5) * np.log(1 / 0.5)  # every x[1] is above the edge
    assert second.drift_features["x[1]"] == round(shifted, 6)
    assert second.drift_psi == second.drift_features["x[1]"] and second.drift_ks == 0.5
    assert Prediction.objects.count() == 60

    assert apply_report(deployment, watcher.report(CollectState.objects.get(deployment=deployment).after)) is None
    restarted = Watcher(PROFILE)
    answer(restarted, "c0", [0, 0], [0.5, 0.5])
    third = apply_report(deployment, restarted.report(0))
    assert (third.rows, third.drift_psi) == (1, None)
    assert CollectState.objects.get(deployment=deployment).pending_rows == 1
    assert WatchSample.objects.count() == 3


def test_beat_collects_every_15_seconds_on_the_deploy_queue(settings):
    from slipway.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["monitoring"]
    assert entry == {"task": "monitoring.tasks.collect", "schedule": 15.0, "options": {"queue": "deploy"}}
    assert settings.CELERY_BEAT_SCHEDULE["forget"]["task"] in app.tasks
    assert entry["task"] in app.tasks
