"""Done when (issue #8): a served release (real worker, local target, real HAProxy) gets a shifted
input stream and late labels; its pages show the drift and the accuracy drop, and an alert in
Alertmanager's format rolls it back, once."""

import html
import json
import re
import time

import numpy as np
import pytest
import requests
from django.test import Client

from monitoring.collect import collect_all
from monitoring.models import MonitoringPolicy
from releases.models import ReleasePolicy, ServingSample, TrafficChange
from releases.pages.queries import release_label
from serving import oip
from tests.conftest import make_user, served_by, to_production, token_client, wait_for_status
from tests.factories import digits_model
from tests.monitoring.test_alerts import notification
from tests.releases.test_metrics import prometheus
from tests.shipping.load import SteadyLoad
from tests.workers.test_shipping_flow import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
PHASE_S = 6.0  # longer than the 5 s windows the page uses for this span: the first and last are pure
# Rows in each phase at the least: fewer leave the largest of 64 features' PSI over 0.25 by sampling
# noise alone (a slow CI host sent ~150 in 6 s and the normal stream read as drifted).
PHASE_ROWS = 400


def replay(rows: np.ndarray, labels: np.ndarray, seconds: float) -> list[tuple[str, int, bool]]:
    """Send rows one by one through production's endpoint for `seconds` and PHASE_ROWS rows at the least;
    (prediction id, label, answered right) of each."""
    sent, started, i = [], time.monotonic(), 0
    with requests.Session() as session:
        while time.monotonic() - started < seconds or i < PHASE_ROWS:
            body = oip.request_document({"pixels": rows[i % len(rows):][:1].astype(np.float32)})
            answer = session.post(PRODUCTION + oip.infer_path("digits"), json=body, timeout=5)
            assert answer.status_code == 200, answer.text
            guess = int(np.argmax(oip.response_outputs(answer.json())["probabilities"][0]))
            label = int(labels[i % len(rows)])
            sent.append((answer.headers["X-Prediction-Id"], label, guess == label))
            i += 1
            time.sleep(0.01)
    return sent


def page_data(page: str, element_id: str) -> dict:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(html.unescape(found.group(1)))


def test_shifted_inputs_and_late_labels_show_on_the_pages_and_an_alert_rolls_back_once(celery_worker, beat, users):
    ci, alice, bob = (token_client(users[n]) for n in ("ci", "alice", "bob"))
    first = to_production(ci, alice, bob, "1")
    assert wait_for_status(first, "released", "failed").status == "released"
    ReleasePolicy.objects.update(canary_minutes=0.1, canary_min_requests=5)
    m = digits_model()
    body = oip.request_document({"pixels": m.eval_inputs[:64].astype(np.float32)})
    with SteadyLoad(PRODUCTION + oip.infer_path("digits"), rate=20, clients=2, body=body):
        second = to_production(ci, alice, bob, "2")
        release = wait_for_status(second, "released", "failed", timeout=90)
        assert release.status == "released", release.failure_reason
    MonitoringPolicy.objects.create(model=release.version.model, on_alert="rollback", cooldown_seconds=600)
    assert collect_all() == {"collected": 4, "unreachable": 0}  # both releases in staging and production

    normal = replay(m.eval_inputs, m.eval_labels, PHASE_S)
    collect_all()
    shifted = replay(1.0 - m.eval_inputs, m.eval_labels, PHASE_S)  # inverted pixels: the same digits, unseen
    collect_all()
    live = ServingSample.objects.filter(service__environment__name="production", release_id=second)
    assert live.filter(requests_per_s__gt=0).count() >= 2 and not live.filter(error_rate__gt=0)  # the live charts

    feedback = token_client(users["ci"], ["feedback"])
    batch = [{"prediction_id": pid, "label": label} for pid, label, _ in normal + shifted]
    counts = feedback.post("/api/v1/feedback/", batch + batch[:3] + [{"prediction_id": "x", "label": 1}],
                           format="json").json()
    assert counts == {"accepted": len(batch), "unknown": 1, "duplicate": 3, "invalid": 0}

    viewer = Client()
    viewer.force_login(users["victor"])
    for url, line in (("/monitoring/environments/production/", release_label(release)),
                      (f"/monitoring/releases/{second}/", "production")):
        page = viewer.get(url).content.decode()
        lines = {s["label"]: s["points"] for s in page_data(page, "monitoring-quality")["series"]}
        assert line in lines, (url, list(lines))
        windows = lines[line]
        assert sum(p[2] for p in windows) == len(batch)
        assert round(sum(p[1] * p[2] for p in windows)) == sum(right for *_, right in normal + shifted)
        assert windows[0][1] >= 0.85 and windows[-1][1] <= 0.5  # the accuracy drop
        drift = [p[2] for p in next(s for s in page_data(page, "monitoring-watch")["series"]
                                    if s["label"] == line)["points"] if p[2] is not None]
        assert drift[-2] < 0.25 < drift[-1]  # the normal stream did not drift; the shifted one did
    metrics = prometheus().get("/metrics").content.decode()
    assert f'slipway_input_drift_psi{{environment="production",model="digits",release="{second}"}}' in metrics

    pager = token_client(make_user("pager", "on-call"), ["alerts", "rollback"])
    alert = notification(release=str(second))
    first_answer = pager.post("/api/v1/alerts/", alert, format="json").json()["alerts"][0]
    assert first_answer["action"] == "rolled_back"
    assert served_by(PRODUCTION) == str(first)
    flapping = pager.post("/api/v1/alerts/", notification(), format="json").json()["alerts"][0]
    assert flapping["action"] == "notified" and flapping["detail"].startswith("cool-down")
    assert TrafficChange.objects.filter(service__environment__name="production", action="rollback").count() == 1
    assert served_by(PRODUCTION) == str(first)
    assert wait_for_status(second, "rolled_back").status == "rolled_back"
