"""Finding 3: who may post alerts, and what an alert may make Slipway do.

The attacks: a viewer signed in to the pages posted forged alerts (audited, sent to pager webhooks);
a token with only the `alerts` scope rolled production back though the rollback API refuses it.
"""

import json

import pytest
from django.test import Client

from monitoring.models import AlertAction, MonitoringPolicy
from releases.models import ApiToken, AuditEvent
from tests.conftest import make_user, token_client
from tests.monitoring.test_alerts import moves, notification  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def post(client, body: object):
    return client.post("/api/v1/alerts/", json.dumps(body), content_type="application/json")


def test_a_signed_in_viewer_cannot_post_alerts(serving, users):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(users["victor"])
    browser.get("/")  # a CSRF cookie, as a page would have
    token = browser.cookies["csrftoken"].value
    answer = browser.post("/api/v1/alerts/", json.dumps(notification()), content_type="application/json",
                          HTTP_X_CSRFTOKEN=token)
    assert answer.status_code == 401
    assert not AuditEvent.objects.filter(action="alert.fired").exists()
    assert not AlertAction.objects.exists()


def test_an_alerts_token_without_the_rollback_scope_only_notifies(serving, moves):  # noqa: F811
    MonitoringPolicy.objects.create(model=serving["active"].release.version.model, on_alert="rollback")
    deployer = make_user("pager", "deployer")
    alerts_only = token_client(deployer, ["alerts"])
    assert alerts_only.post("/api/v1/environments/production/rollback/", {"reason": "x"},
                            format="json").status_code == 403
    answer = post(alerts_only, notification()).json()["alerts"][0]
    assert answer["action"] == "notified"
    assert answer["detail"] == "the alerts token lacks the 'rollback' scope, so an alert only notifies"
    assert moves == []
    rolled = post(token_client(deployer, ["alerts", "rollback"]), notification()).json()["alerts"][0]
    assert rolled["action"] == "rolled_back" and len(moves) == 1


def test_an_alert_may_name_only_what_the_token_is_bound_to(serving, moves):  # noqa: F811
    MonitoringPolicy.objects.create(model=serving["active"].release.version.model, on_alert="rollback")
    _, raw = ApiToken.issue(make_user("pager", "on-call"), "alertmanager", ["alerts", "rollback"])
    ApiToken.objects.update(bound_models=["iris"], bound_environments=["production"])
    bound = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    answer = post(bound, notification())
    assert answer.status_code == 403
    assert answer.json() == {"error": "not_bound", "detail": "this token is not bound to digits in production"}
    assert moves == [] and not AlertAction.objects.exists() and not AuditEvent.objects.filter(
        action="alert.fired").exists()
    ApiToken.objects.update(bound_models=["iris", "digits"])
    assert post(bound, notification()).json()["alerts"][0]["action"] == "rolled_back"
