"""The webhooks pages: subscriptions with their last delivery, a delivery history, admin-only forms."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from releases.actors import Actor
from releases.statemachine import record
from tests.browser import client_for
from tests.conftest import make_user
from tests.pages import data as d
from tests.webhooks.helpers import fire_alert, subscribe
from tests.webhooks.receiver import dead_url
from webhooks.models import Delivery, Subscription

pytestmark = pytest.mark.django_db


def csrf_client(user) -> tuple[Client, str]:
    """A logged-in client that must send the CSRF token, and the token from the page's form."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/webhooks/").content.decode())
    return client, token.group(1)


def test_the_pages_ask_for_a_login(client):
    assert client.get("/webhooks/")["Location"] == "/login/?next=/webhooks/"
    assert client.get("/webhooks/1/")["Location"] == "/login/?next=/webhooks/1/"


def test_the_list_shows_each_subscriptions_last_delivery_status(users):
    quiet, busy = subscribe(dead_url(), ("deployed",)), subscribe(dead_url(), ("alert_firing",))
    fire_alert("first")
    fire_alert("second")
    Delivery.objects.filter(payload__subject="second").update(status="failed")
    page = client_for(users["victor"]).get("/webhooks/")
    assert [(s.pk, s.last_status) for s in page.context["subscriptions"]] == [(quiet.pk, None), (busy.pk, "failed")]
    assert page.context["form"] is None and b'action="/webhooks/new/"' not in page.content
    assert b'<a href="/webhooks/">Webhooks</a>' not in page.content and b'aria-current="page">Webhooks' in page.content


def test_the_history_shows_event_release_status_attempts_response_and_error(users):
    release = d.make_release(d.make_version(d.make_model("digits"), "1.0.0", users["ci"]), status="running")
    subscription = subscribe(dead_url(), ("build_received",))
    record(Actor.worker(), "build.received", release=release, subject=str(release.version))
    Delivery.objects.update(status="retrying", attempts=2, last_response_code=503,
                            last_error="HTTP 503 Service Unavailable: busy")
    page = client_for(users["victor"]).get(f"/webhooks/{subscription.pk}/")
    html = page.content.decode()
    [row] = page.context["deliveries"].object_list
    assert (row.event, row.release_id, row.status, row.attempts) == ("build_received", release.pk, "retrying", 2)
    assert f'<a href="/releases/{release.pk}/">#{release.pk} 1.0.0</a>' in html
    assert "HTTP 503 Service Unavailable: busy" in html and "<td data-label=\"Response\">503</td>" in html
    assert "Redeliver" not in html  # a viewer only reads


def test_an_admin_creates_a_subscription_on_the_page_and_sees_its_secret_once(db):
    ada = make_user("ada", "admin")
    client, token = csrf_client(ada)
    form = {"name": "chatops", "url": "https://hooks.example.com/x", "events": ["deployed", "rolled_back"],
            "model": "", "secret": ""}
    assert client.post("/webhooks/new/", form).status_code == 403  # no CSRF token: refused
    answer = client.post("/webhooks/new/", form | {"csrfmiddlewaretoken": token})
    subscription = Subscription.objects.get()
    assert answer["Location"] == f"/webhooks/{subscription.pk}/"
    assert (subscription.events, subscription.created_by, subscription.model) == (["deployed", "rolled_back"], ada,
                                                                                   None)
    first = client.get(answer["Location"]).content.decode()
    assert f"<code>{subscription.secret}</code>" in first
    assert subscription.secret not in client.get(answer["Location"]).content.decode()


def test_a_bad_form_is_shown_again_with_what_is_wrong(db):
    client, token = csrf_client(make_user("ada", "admin"))
    answer = client.post("/webhooks/new/", {"csrfmiddlewaretoken": token, "name": "x", "url": "ftp://h.example/x",
                                            "events": ["exploded"]})
    assert answer.status_code == 400
    assert answer.context["form"].errors == {
        "url": ["Enter an http or https URL."],
        "events": ["Select a valid choice. exploded is not one of the available choices."]}
    assert Subscription.objects.count() == 0


def test_only_admins_create_and_redeliver(users):
    subscription = subscribe(dead_url(), ("alert_firing",))
    fire_alert()
    delivery = Delivery.objects.get()
    victor = client_for(users["victor"])
    assert victor.post("/webhooks/new/", {"name": "x"}).status_code == 403
    assert victor.post(f"/webhooks/{subscription.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 403
    ada = client_for(make_user("ada", "admin"))
    page = ada.get(f"/webhooks/{subscription.pk}/").content.decode()
    assert f'action="/webhooks/{subscription.pk}/deliveries/{delivery.pk}/redeliver/"' in page
    answer = ada.post(f"/webhooks/{subscription.pk}/deliveries/{delivery.pk}/redeliver/", follow=True)
    copy = Delivery.objects.exclude(pk=delivery.pk).get()
    assert [str(m) for m in answer.context["messages"]] == [
        f"The alert_firing event is sent again as delivery {copy.uuid}."]
    assert (copy.payload, copy.status) == (delivery.payload, "pending")


def test_the_admin_shows_the_secret_when_a_subscription_is_made_and_never_afterwards(db):
    client = client_for(User.objects.create_superuser("root", password="pw-root"))
    assert b'name="secret"' in client.get("/admin/webhooks/subscription/add/").content
    subscription = subscribe(dead_url())
    page = client.get(f"/admin/webhooks/subscription/{subscription.pk}/change/").content.decode()
    assert 'name="url"' in page and subscription.secret not in page
