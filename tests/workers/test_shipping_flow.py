"""Two releases through staging, the production gate and a canary under load, then a rollback —
real worker process, real HAProxy, model servers as local processes."""

import io
import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from monitoring.models import ShadowRun
from monitoring.shadowing import collect_one
from releases.candidates import serving_artifact
from releases.models import Deployment, ReleasePolicy, TrafficChange
from releases.routing import target_for
from releases.storage import get_store
from serving import oip
from shipping.targets import Instance
from tests.conftest import served_by, to_production, token_client, wait_for_status
from tests.factories import digits_model
from tests.shipping.load import SteadyLoad

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
PRODUCTION = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT + 1}"


def test_staging_canary_promotion_and_one_call_rollback_under_load(celery_worker, beat, users):
    ci, alice, bob = (token_client(users[n]) for n in ("ci", "alice", "bob"))
    ReleasePolicy.objects.filter(model__name="digits").update(canary_minutes=0.1, canary_min_requests=5)
    first = to_production(ci, alice, bob, "1")
    assert wait_for_status(first, "released", "failed").status == "released"
    assert served_by(PRODUCTION) == str(first)

    body = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})
    with SteadyLoad(PRODUCTION + oip.infer_path("digits"), rate=40, clients=2, body=body) as load:
        ReleasePolicy.objects.update(canary_minutes=0.1, canary_min_requests=5)
        second = to_production(ci, alice, bob, "2")
        release = wait_for_status(second, "released", "failed", timeout=90)
        assert release.status == "released", release.failure_reason
        assert "within thresholds" in release.stages.get(name="canary").log
        time.sleep(0.5)
        clicked = time.perf_counter()
        oncall = token_client(users["ci"], ["rollback", "releases:read"])
        response = oncall.post(
            "/api/v1/environments/production/models/digits/rollback/",
            {"reason": "bad answers", "expected_release": second},
            format="json",
        )
        assert response.status_code == 200, response.json()
        took = time.perf_counter() - clicked
        time.sleep(1)
    assert load.failures == [], load.failures[:5]
    canary_answers = {o.release for o in load.outcomes}
    assert canary_answers == {str(first), str(second)}
    after = {o.release for o in load.sent_after(clicked + took)}
    assert after == {str(first)}  # how fast: bench/rollback.py

    # A double click changes nothing; the record says what served when.
    again = oncall.post(
        "/api/v1/environments/production/models/digits/rollback/",
        {"reason": "bad answers", "expected_release": second},
        format="json",
    )
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert [c.action for c in TrafficChange.objects.filter(service__environment__name="production").order_by("at")] == [
        "deploy",
        "canary",
        "promote",
        "rollback",
    ]
    assert Deployment.objects.get(service__environment__name="production", role="active").release_id == first
    live = ci.get("/api/v1/environments/production/live-at/").json()
    assert [r["id"] for r in live["releases"]] == [first]
    assert served_by(PRODUCTION) == str(first)
    assert wait_for_status(second, "rolled_back").status == "rolled_back"

    # tritonclient through production's address, then the rolled-back release in shadow of the active one.
    active = Deployment.objects.get(service__environment__name="production", role="active")
    rows = digits_model().eval_inputs[:4].astype(np.float32)
    served = get_store().local_path(serving_artifact(active.release).sha256)  # the chosen candidate
    expected = ort.InferenceSession(str(served)).run(None, {"pixels": rows})[0]
    client = triton.InferenceServerClient(PRODUCTION.removeprefix("http://"))
    pixels = triton.InferInput("pixels", [4, 64], "FP32")
    pixels.set_data_from_numpy(rows)
    np.testing.assert_allclose(client.infer("digits", [pixels]).as_numpy("probabilities"), expected, rtol=1e-6)
    call_command("shadow", "start", "production", str(second), "--share", "1", "--minutes", "0",
                 "--min-pairs", "10", stdout=io.StringIO())
    run = ShadowRun.objects.get(stopped_at=None)
    assert (run.active_id, run.shadow_id, run.verdict) == (first, second, "wait")
    run.max_p95_increase = 1e9  # 10 pairs judge agreement here; their latencies are timing (bench/serving.py)
    run.save(update_fields=["max_p95_increase"])
    for _ in range(10):
        client.infer("digits", [pixels])
    client.close()
    deadline = time.monotonic() + 20
    while collect_one(run).figures.get("pairs", 0) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    paired = (run.figures["pairs"], run.figures.get("task"), run.figures.get("same_label_rate"), run.verdict)
    assert paired == (10, "classification", 1.0, "pass"), (run.figures, run.reason)
    viewer = Client()
    viewer.force_login(users["victor"])
    panel = viewer.get(f"/monitoring/releases/{second}/shadow/").content.decode()
    assert "In shadow" in panel and "same label rate 1.0000" in panel and f"#{first}" in panel
    out = io.StringIO()
    call_command("shadow", "stop", "production", stdout=out)
    assert json.loads(out.getvalue())["verdict"] == "pass"
    assert ShadowRun.objects.get().stopped_at is not None
    assert not target_for(active.environment).is_alive(Instance(**run.instance))
