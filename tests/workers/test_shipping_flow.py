"""Two releases through staging, the production gate and a canary under load, then a rollback —
real worker process, real HAProxy, model servers as local processes."""

import time

import numpy as np
import pytest
import requests
from django.conf import settings

from releases.models import Deployment, ReleasePolicy, TrafficChange
from serving import oip
from tests.conftest import build_form, token_client, wait_for_status
from tests.factories import digits_model
from tests.shipping.load import SteadyLoad

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
PRODUCTION = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT + 1}"


def ship(ci, alice, bob, version: str) -> int:
    response = ci.post("/api/v1/builds/", build_form(version=version), format="multipart")
    assert response.status_code == 201, response.json()
    release_id = response.json()["release"]["id"]
    wait_for_status(release_id, "awaiting_approval")
    assert alice.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json").status_code == 201
    release = wait_for_status(release_id, "awaiting_approval", "failed", timeout=60)
    assert release.status == "awaiting_approval", release.failure_reason
    assert release.stages.get(name="production_gate").status == "waiting"
    assert release.stages.get(name="deploy_staging").status == "succeeded"
    assert bob.post(f"/api/v1/releases/{release_id}/approve/", {"comment": "prod ok"}, format="json").status_code == 201
    return release_id


def served_by() -> str:
    body = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})
    answer = requests.post(PRODUCTION + oip.infer_path("digits"), json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Release-Id"]


def test_staging_canary_promotion_and_one_call_rollback_under_load(celery_worker, users):
    ci, alice, bob = (token_client(users[n]) for n in ("ci", "alice", "bob"))
    ReleasePolicy.objects.filter(model__name="digits").update(canary_minutes=0.1, canary_min_requests=5)
    first = ship(ci, alice, bob, "1")
    assert wait_for_status(first, "released", "failed").status == "released"
    assert served_by() == str(first)

    body = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})
    with SteadyLoad(PRODUCTION + oip.infer_path("digits"), rate=40, clients=2, body=body) as load:
        ReleasePolicy.objects.update(canary_minutes=0.1, canary_min_requests=5)
        second = ship(ci, alice, bob, "2")
        release = wait_for_status(second, "released", "failed", timeout=90)
        assert release.status == "released", release.failure_reason
        assert "within thresholds" in release.stages.get(name="canary").log
        time.sleep(0.5)
        clicked = time.perf_counter()
        oncall = token_client(users["ci"], ["rollback", "releases:read"])
        response = oncall.post(
            "/api/v1/environments/production/rollback/",
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
        "/api/v1/environments/production/rollback/",
        {"reason": "bad answers", "expected_release": second},
        format="json",
    )
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert [c.action for c in TrafficChange.objects.filter(environment__name="production").order_by("at")] == [
        "deploy",
        "canary",
        "promote",
        "rollback",
    ]
    assert Deployment.objects.get(environment__name="production", role="active").release_id == first
    live = ci.get("/api/v1/environments/production/live-at/").json()
    assert [r["id"] for r in live["releases"]] == [first]
    assert served_by() == str(first)
    assert wait_for_status(second, "rolled_back").status == "rolled_back"
