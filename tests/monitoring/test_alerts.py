"""The alert receiver: Alertmanager's webhook format, acted on by the model's policy, once per cool-down.

The proxy call is replaced by a recorder here (as in tests/reliability/test_concurrency.py); the real
proxy path of an alert's rollback is in test_monitoring_flow.py."""

import json

import pytest

from monitoring.models import AlertAction, MonitoringPolicy
from releases.models import AuditEvent, Deployment, TrafficChange
from tests.conftest import make_user, token_client

pytestmark = pytest.mark.django_db


def notification(status: str = "firing", **labels: str) -> dict:
    labels = {"alertname": "SlipwayLiveAccuracyDrop", "model": "digits", "environment": "production"} | labels
    return {"version": "4", "groupKey": "{}:{alertname=\"SlipwayLiveAccuracyDrop\"}", "status": status,
            "receiver": "slipway", "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": labels,
                        "annotations": {"summary": "live accuracy 0.31 below evaluation"},
                        "startsAt": "2026-11-01T03:14:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus:9090/graph", "fingerprint": "c0ffee"}]}


@pytest.fixture
def moves(monkeypatch) -> list[dict]:
    recorded: list[dict] = []
    monkeypatch.setattr("releases.routing.move_traffic", lambda service, shares: recorded.append(
        {d.release_id: s for d, s in shares.items()}))
    monkeypatch.setattr("releases.deploys.check_warm", lambda deployment: None)  # no servers run here
    return recorded


@pytest.fixture
def pager(users):
    return token_client(make_user("pager", "on-call"), ["alerts", "rollback"])


def post(client, body: object):
    return client.post("/api/v1/alerts/", json.dumps(body), content_type="application/json")


def test_by_default_a_firing_alert_notifies_through_the_audit_trail(serving, pager, moves):
    answer = post(pager, notification())
    assert answer.status_code == 200
    assert answer.json() == {"alerts": [{"alertname": "SlipwayLiveAccuracyDrop", "fingerprint": "c0ffee",
                                         "action": "notified", "detail": "alert SlipwayLiveAccuracyDrop firing since "
                                         "2026-11-01T03:14:00Z: live accuracy 0.31 below evaluation"}]}
    event = AuditEvent.objects.get(action="alert.fired")
    assert event.release_id == serving["ids"][1] and event.actor_label == "pager (token test)"
    assert event.after["labels"]["model"] == "digits" and event.after["policy"] == "notify"
    assert moves == [] and not TrafficChange.objects.exists()


def test_a_rollback_policy_rolls_back_once_and_a_flapping_alert_only_notifies(serving, pager, moves):
    MonitoringPolicy.objects.create(model=serving["active"].release.version.model, on_alert="rollback",
                                    cooldown_seconds=600)
    first = post(pager, notification(release=str(serving["ids"][1]))).json()["alerts"][0]
    assert first["action"] == "rolled_back"
    assert moves == [{serving["ids"][0]: 100}]
    change = TrafficChange.objects.get(action="rollback")
    assert change.reason == first["detail"] == ("alert SlipwayLiveAccuracyDrop firing since 2026-11-01T03:14:00Z: "
                                                "live accuracy 0.31 below evaluation")
    assert AuditEvent.objects.get(action="environment.rollback").reason == change.reason
    assert Deployment.objects.get(service=serving["service"], role="active").release_id == serving["ids"][0]

    assert post(pager, notification(status="resolved")).json()["alerts"][0]["action"] == "ignored"
    again = post(pager, notification()).json()["alerts"][0]
    assert again["action"] == "notified"
    assert again["detail"].startswith("cool-down: alert SlipwayLiveAccuracyDrop rolled digits back in production at ")
    assert again["detail"].endswith("; no second rollback within 600 s")
    stale = post(pager, notification(release=str(serving["ids"][1]))).json()["alerts"][0]
    assert stale["detail"] == f"release #{serving['ids'][1]} no longer serves in production"
    assert len(moves) == 1 and TrafficChange.objects.filter(action="rollback").count() == 1
    assert list(AlertAction.objects.order_by("id").values_list("action", flat=True)) == [
        "rolled_back", "notified", "notified"]


def test_after_the_cool_down_an_alert_tries_to_roll_back_again(serving, pager, moves):
    MonitoringPolicy.objects.create(model=serving["active"].release.version.model, on_alert="rollback",
                                    cooldown_seconds=0)
    assert post(pager, notification()).json()["alerts"][0]["action"] == "rolled_back"
    TrafficChange.objects.update(at="2000-01-01T00:00:00Z")  # past the unguarded-repeat window of rollback()
    answer = post(pager, notification()).json()["alerts"][0]
    assert answer["action"] == "notified"
    assert answer["detail"].startswith("the rollback failed: nothing to roll back to for digits in production")


def test_a_token_user_who_may_not_roll_back_is_reported_not_obeyed(serving, users, moves):
    MonitoringPolicy.objects.create(model=serving["active"].release.version.model, on_alert="rollback")
    answer = post(token_client(users["victor"], ["alerts", "rollback"]), notification()).json()["alerts"][0]
    assert answer == {"alertname": "SlipwayLiveAccuracyDrop", "fingerprint": "c0ffee", "action": "notified",
                      "detail": "the rollback failed: victor is not on-call, a deployer or an admin"}
    assert moves == []


def test_unknown_labels_and_malformed_bodies(serving, pager):
    unknown = post(pager, notification(model="nope")).json()["alerts"][0]
    assert unknown["action"] == "ignored"
    assert post(pager, {"alerts": "x"}).status_code == 400
    assert post(pager, {"alerts": [{"labels": []}]}).json() == {
        "error": "malformed", "detail": "every alert must be an object with a labels object"}
    assert post(token_client(make_user("x", "on-call"), ["feedback"]), notification()).status_code == 403


def test_the_policy_is_editable_over_the_api(serving, users):
    deployer = token_client(users["ci"], ["deploy", "releases:read"])
    assert deployer.get("/api/v1/models/digits/monitoring/").json() == {
        "model": "digits", "on_alert": "notify", "cooldown_seconds": 1800, "shadow_gate": False}
    changed = deployer.put("/api/v1/models/digits/monitoring/",
                           {"on_alert": "rollback", "cooldown_seconds": 60, "shadow_gate": True}, format="json")
    assert changed.json() == {"model": "digits", "on_alert": "rollback", "cooldown_seconds": 60, "shadow_gate": True}
    bad = deployer.put("/api/v1/models/digits/monitoring/", {"on_alert": "panic"}, format="json")
    assert bad.status_code == 400 and bad.json()["fields"] == {"on_alert": ['"panic" is not a valid choice.']}
    assert token_client(users["victor"], ["deploy"]).put("/api/v1/models/digits/monitoring/", {}).status_code == 403
