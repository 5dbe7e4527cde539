"""Simultaneous decisions on one release or environment: exactly one takes effect, the others get 409
with the reason — real parallel HTTP requests to a live server on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests
from django.contrib.auth.models import User

from releases.models import Approval, Deployment, Environment, Release, ReleasePolicy, Service, TrafficChange
from releases.models.tokens import ApiToken
from tests.conftest import build_form, make_user, token_client

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def at_once(calls: list) -> list[requests.Response]:
    """Start every call at the same moment, each in its own thread."""
    barrier = Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def bearer(user: User, *scopes: str) -> dict:
    return {"Authorization": f"Bearer {ApiToken.issue(user, 'race', list(scopes))[1]}"}


def waiting_release(users, settings, tmp_path) -> Release:
    settings.ARTIFACT_DIR = tmp_path
    release_id = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart").json()[
        "release"]["id"]
    Release.objects.filter(pk=release_id).update(status="awaiting_approval")
    Release.objects.get(pk=release_id).stages.filter(name="gate").update(status="waiting")
    return Release.objects.get(pk=release_id)


def test_simultaneous_approvals_only_one_counts(live_server, users, settings, tmp_path):
    release = waiting_release(users, settings, tmp_path)
    approvers = [users["alice"], users["bob"], *(make_user(f"approver{i}", "approver") for i in range(4))]
    url = f"{live_server.url}/api/v1/releases/{release.pk}/approve/"
    answers = at_once([lambda u=u: requests.post(url, json={"comment": "go"}, headers=bearer(u, "approve"),
                                                 timeout=30) for u in approvers])
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409, 409, 409]
    assert {a.json()["detail"] for a in answers if a.status_code == 409} == {
        f"release #{release.pk} is approved, not awaiting approval"}
    assert Approval.objects.filter(release=release).count() == 1


def test_a_decision_from_the_same_person_twice_at_once_counts_once(live_server, users, settings, tmp_path):
    release = waiting_release(users, settings, tmp_path)
    ReleasePolicy.objects.update(required_approvals=2)
    headers = bearer(users["alice"], "approve")
    url = f"{live_server.url}/api/v1/releases/{release.pk}/approve/"
    answers = at_once([lambda: requests.post(url, json={}, headers=headers, timeout=30)] * 4)
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    assert Approval.objects.filter(release=release).count() == 1
    assert Release.objects.get(pk=release.pk).status == "awaiting_approval"


def test_simultaneous_rollbacks_move_traffic_once(live_server, users, settings, tmp_path, monkeypatch):
    """The proxy call is replaced by a recorder here: the race is about the records (the real proxy
    path is tested in tests/workers/test_shipping_flow.py)."""
    moves = []
    monkeypatch.setattr("releases.routing.move_traffic", lambda service, shares: moves.append(
        {d.release_id: s for d, s in shares.items()}))
    monkeypatch.setattr("releases.deploys.check_warm", lambda deployment: None)  # no servers run here
    settings.ARTIFACT_DIR = tmp_path
    ci = token_client(users["ci"])
    ids = [ci.post("/api/v1/builds/", build_form(version=str(v)), format="multipart").json()["release"]["id"]
           for v in (1, 2, 3)]
    production = Service.objects.create(environment=Environment.objects.get(name="production"),
                                        model=Release.objects.get(pk=ids[0]).version.model)
    for release_id, role in zip(ids, ["warm", "warm", "active"], strict=True):
        Deployment.objects.create(service=production, release_id=release_id, role=role,
                                  traffic_percent=100 if role == "active" else 0)
    oncall = make_user("pager", "on-call")
    url = f"{live_server.url}/api/v1/environments/production/rollback/"
    guarded = at_once([lambda: requests.post(url, json={"reason": "errors", "expected_release": ids[2]},
                                             headers=bearer(oncall, "rollback"), timeout=30)] * 3)
    assert [a.status_code for a in guarded] == [200, 200, 200]
    assert len({a.json()["id"] for a in guarded}) == 1
    unguarded = at_once([lambda: requests.post(url, json={"reason": "errors"}, headers=bearer(oncall, "rollback"),
                                               timeout=30)] * 3)
    assert [a.status_code for a in unguarded] == [409, 409, 409]
    assert "was rolled back" in unguarded[0].json()["detail"]
    assert TrafficChange.objects.filter(action="rollback").count() == 1
    assert len(moves) == 1 and moves[0] == {ids[1]: 100}
    assert Deployment.objects.get(service=production, role="active").release_id == ids[1]
