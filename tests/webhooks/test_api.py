"""The webhooks API: admins manage subscriptions with the webhooks:write scope; bad input is a 4xx."""

import pytest

from tests.conftest import make_user, token_client
from tests.pages import data as d
from tests.webhooks.helpers import fire_alert, subscribe
from tests.webhooks.receiver import dead_url
from webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhooks/"
NEW = {"name": "chatops", "url": "https://hooks.example.com/slipway", "events": ["gate_waiting", "build_received"]}


@pytest.fixture
def admin(db):
    return token_client(make_user("ada", "admin"), ["webhooks:write", "releases:read"])


def test_an_admin_creates_a_subscription_and_sees_its_secret_only_in_that_answer(admin):
    answer = admin.post(URL, NEW, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    subscription = Subscription.objects.get()
    assert body == {"id": subscription.pk, "name": "chatops", "url": "https://hooks.example.com/slipway",
                    "events": ["build_received", "gate_waiting"], "model": None, "active": True,
                    "secret": subscription.secret, "created_by": "ada", "created_at": body["created_at"]}
    assert len(subscription.secret) == 43
    listed = admin.get(URL).json()["results"]
    assert [s["name"] for s in listed] == ["chatops"] and "secret" not in listed[0]
    assert "secret" not in admin.get(f"{URL}{subscription.pk}/").json()


def test_the_creator_may_set_the_secret_and_a_model_filter(admin, users):
    d.make_model("digits")
    answer = admin.post(URL, NEW | {"secret": "x" * 20, "model": "digits"}, format="json")
    assert answer.status_code == 201, answer.json()
    assert (answer.json()["secret"], answer.json()["model"]) == ("x" * 20, "digits")


@pytest.mark.parametrize(("change", "field", "detail"), [
    ({"url": "ftp://files.example.com/x"}, "url", "url: Enter an http or https URL."),
    ({"url": "not a url"}, "url", "url: Enter an http or https URL."),
    ({"events": ["deployed", "exploded"]}, "events", "events: unknown events: exploded; known: build_received, "
     "gate_waiting, approved, rejected, deployed, canary_failed, rolled_back, alert_firing"),
    ({"events": []}, "events", "events: choose at least one event"),
    ({"secret": "short"}, "secret", "secret: Ensure this field has at least 16 characters."),
    ({"model": "nope"}, "model", "model: Object with name=nope does not exist."),
    ({"model": "no spaces allowed"}, "model", "model: Use 1-100 lower-case letters, digits, '.', '_' or '-', "
     "starting with a letter or digit."),
])
def test_bad_input_is_a_400_that_says_what_is_wrong_and_stores_nothing(admin, change, field, detail):
    answer = admin.post(URL, NEW | change, format="json")
    assert answer.status_code == 400
    body = answer.json()
    assert (body["error"], list(body["fields"])) == ("invalid", [field])
    assert body["detail"] == detail
    assert Subscription.objects.count() == 0


def test_a_viewer_reads_subscriptions_but_may_not_create_change_or_delete_them(users):
    subscription = subscribe(dead_url())
    victor = token_client(users["victor"])
    assert victor.get(URL).status_code == 200
    for answer in (victor.post(URL, NEW, format="json"),
                   victor.patch(f"{URL}{subscription.pk}/", {"active": False}, format="json"),
                   victor.delete(f"{URL}{subscription.pk}/")):
        assert (answer.status_code, answer.json()) == (
            403, {"error": "permission_denied", "detail": "victor has no role that may manage webhooks"})
    assert Subscription.objects.get().active is True


def test_an_admin_token_without_the_scope_may_not_write(db):
    reader = token_client(make_user("ada", "admin"), ["releases:read"])
    answer = reader.post(URL, NEW, format="json")
    assert (answer.status_code, answer.json()["detail"]) == (403, "this token lacks the 'webhooks:write' scope")


def test_an_admin_changes_and_deletes_a_subscription(admin):
    subscription = subscribe(dead_url())
    answer = admin.patch(f"{URL}{subscription.pk}/", {"active": False, "events": ["deployed"]}, format="json")
    assert answer.status_code == 200, answer.json()
    subscription.refresh_from_db()
    assert (subscription.active, subscription.events) == (False, ["deployed"])
    assert admin.delete(f"{URL}{subscription.pk}/").status_code == 204
    assert Subscription.objects.count() == 0


def test_deliveries_are_listed_and_one_is_redelivered_as_a_new_delivery(admin):
    subscription = subscribe(dead_url(), ("alert_firing",))
    fire_alert()
    first = Delivery.objects.get()
    listed = admin.get(f"{URL}{subscription.pk}/deliveries/").json()
    assert listed["count"] == 1
    assert {k: listed["results"][0][k] for k in ("id", "uuid", "event", "status", "attempts")} == {
        "id": first.pk, "uuid": str(first.uuid), "event": "alert_firing", "status": "pending", "attempts": 0}
    answer = admin.post(f"{URL}{subscription.pk}/deliveries/{first.pk}/redeliver/")
    assert answer.status_code == 202, answer.json()
    copy = Delivery.objects.exclude(pk=first.pk).get()
    assert (answer.json()["id"], copy.event, copy.payload, copy.status) == (
        copy.pk, "alert_firing", first.payload, "pending")
    assert copy.uuid != first.uuid


def test_a_delivery_is_redelivered_only_through_its_own_subscription(admin):
    mine, other = subscribe(dead_url(), ("alert_firing",)), subscribe(dead_url(), ("deployed",))
    fire_alert()
    delivery = Delivery.objects.get(subscription=mine)
    answer = admin.post(f"{URL}{other.pk}/deliveries/{delivery.pk}/redeliver/")
    assert answer.status_code == 404
    assert Delivery.objects.count() == 1


def test_the_schema_describes_the_webhooks_endpoints(admin):
    paths = admin.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert sorted(p for p in paths if p.startswith(URL)) == [
        "/api/v1/webhooks/", "/api/v1/webhooks/{id}/", "/api/v1/webhooks/{id}/deliveries/",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver/"]
