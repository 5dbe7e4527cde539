"""Two models in staging and production at once — real worker, real beat, real HAProxy, model servers as local
processes: a canary of one that sees too little traffic waits for a person while the other's traffic is
untouched, a rollback of one leaves the other serving, and bad requests change nothing.

It ships three releases through the whole pipeline (about a minute each on a loaded machine): the
scenario is one story, so it is one test."""

import time

import numpy as np
import pytest
import requests
from django.conf import settings
from django.test import Client

from releases.models import Canary, Deployment, ReleasePolicy, TrafficChange
from serving import oip
from tests.conftest import to_production, token_client, wait_for_status
from tests.factories import digits_model
from tests.shipping.load import SteadyLoad

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
PRODUCTION = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT + 1}"
STAGING = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}"
BODY = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})


def ship(ci, alice, bob, model: str, version: str) -> int:
    return to_production(ci, alice, bob, version, model=model)


def served_by(base: str, model: str) -> str:
    answer = requests.post(base + oip.infer_path(model), json=BODY, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Release-Id"]


def wait_for_canary(status: str, timeout: float = 120) -> Canary:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        canary = Canary.objects.filter(status=status).first()
        if canary is not None:
            return canary
        time.sleep(0.2)
    raise AssertionError(f"no canary became {status}: {list(Canary.objects.values('status', 'verdict'))}")


def test_two_models_serve_side_by_side_and_move_independently(celery_worker, beat, users):
    ci, alice, bob = (token_client(users[n]) for n in ("ci", "alice", "bob"))
    digits1 = ship(ci, alice, bob, "digits", "1")
    wine1 = ship(ci, alice, bob, "wine", "1")
    for release_id in (digits1, wine1):
        assert wait_for_status(release_id, "released", "failed", timeout=120).status == "released"
    for base in (STAGING, PRODUCTION):
        assert (served_by(base, "digits"), served_by(base, "wine")) == (str(digits1), str(wine1))

    # A canary of digits that sees too little traffic: extended once, then it waits for a person.
    ReleasePolicy.objects.filter(model__name="digits").update(canary_minutes=0.05, canary_min_requests=100_000,
                                                              canary_max_extensions=1)
    with SteadyLoad(PRODUCTION + oip.infer_path("wine"), rate=20, clients=2, body=BODY) as wine_load, \
            SteadyLoad(PRODUCTION + oip.infer_path("digits"), rate=20, clients=2, body=BODY) as digits_load:
        digits2 = ship(ci, alice, bob, "digits", "2")
        canary = wait_for_canary("waiting", timeout=180)
        assert canary.deployment.release_id == digits2 and canary.extensions == 1
        assert canary.verdict.startswith("inconclusive after 1 extensions: not enough traffic")
        answer = ci.get("/api/v1/environments/production/models/digits/").json()
        assert answer["canary"]["status"] == "waiting"
        assert 0 < answer["canary"]["canary_requests"] < answer["canary"]["requests_needed"] == 100_000
        assert wait_for_status(digits2, "shipping").status == "shipping"  # not rolled back as a failure
        browser = Client()
        browser.force_login(users["ci"])
        page = browser.get("/environments/production/")
        assert b"of <strong>100000</strong> needed each" in page.content
        promoted = ci.post("/api/v1/environments/production/models/digits/promote/",
                           {"reason": "quiet hour; figures look fine"}, format="json")
        assert promoted.status_code == 200, promoted.json()
        assert promoted.json()["status"] == "promoted"
        assert wait_for_status(digits2, "released", "failed").status == "released"
        time.sleep(0.5)
        switched = time.perf_counter()
        time.sleep(1)
    assert wine_load.failures == [] and digits_load.failures == []
    assert {o.release for o in wine_load.outcomes} == {str(wine1)}  # the canary never touched wine
    assert {o.release for o in digits_load.outcomes} == {str(digits1), str(digits2)}
    assert {o.release for o in digits_load.sent_after(switched)} == {str(digits2)}

    # Bad requests: each a clear 4xx JSON, nothing changed.
    again = ci.post("/api/v1/environments/production/models/digits/promote/", {"reason": "again"}, format="json")
    assert (again.status_code, again.json()) == (409, {"error": "conflict", "detail":
                                                       "no canary of digits is running in production"})
    nothing_warm = ci.post("/api/v1/environments/production/models/wine/rollback/", {"reason": "x"}, format="json")
    assert (nothing_warm.status_code, nothing_warm.json()["detail"]) == (
        409, "nothing to roll back to for wine in production: no earlier release is warm")
    unknown = requests.post(PRODUCTION + oip.infer_path("nope"), json=BODY, timeout=5)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no model nope serves in production"})
    assert ci.post("/api/v1/environments/production/models/nope/rollback/", {"reason": "x"},
                   format="json").status_code == 404
    moves = TrafficChange.objects.count()

    # Rolling digits back leaves wine serving the same release.
    rolled = ci.post("/api/v1/environments/production/models/digits/rollback/",
                     {"reason": "bad answers", "expected_release": digits2}, format="json")
    assert rolled.status_code == 200, rolled.json()
    assert TrafficChange.objects.count() == moves + 1
    assert (served_by(PRODUCTION, "digits"), served_by(PRODUCTION, "wine")) == (str(digits1), str(wine1))
    assert list(Deployment.objects.filter(service__environment__name="production", role="active")
                .order_by("service__model__name").values_list("service__model__name", "release_id")) == [
        ("digits", digits1), ("wine", wine1)]
    assert [c.action for c in TrafficChange.objects.filter(service__environment__name="production",
                                                           service__model__name="wine")] == ["deploy"]
