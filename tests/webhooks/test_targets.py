"""Finding 2: webhooks reach no internal address (loopback, link-local metadata, private, multicast), neither
when saved nor when sent, on the one address the connection uses; a receiver's answer is never kept.

Outside tests/settings.py's allow-list of loopback (for the other tests' local receivers) it is empty here.
"""

import socket

import pytest
from django.test import Client

from tests.conftest import make_user, token_client
from tests.webhooks.helpers import SECRET, fire_alert, subscribe
from tests.webhooks.receiver import Receiver
from webhooks.models import Delivery, Subscription
from webhooks.sending import deliver

pytestmark = pytest.mark.django_db

INTERNAL = ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/hook", "http://192.168.0.10/hook", "http://[::1]/hook", "http://224.0.0.1/hook",
            "http://0.0.0.0/hook", "http://[::ffff:127.0.0.1]/hook", "https://100.64.0.1/hook",
            "http://[2002:a01:203::1]/hook", "http://[64:ff9b::a9fe:a9fe]/hook"]  # 6to4 of 10.1.2.3, NAT64 of 169.254…


@pytest.fixture(autouse=True)
def no_allow_list(settings):
    settings.SLIPWAY_WEBHOOK_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_target_is_refused_when_saved(url):
    admin = token_client(make_user("ada", "admin"), ["webhooks:write"])
    answer = admin.post("/api/v1/webhooks/", {"name": "x", "url": url, "events": ["approved"]}, format="json")
    assert answer.status_code == 400, answer.json()
    assert "webhooks go to public addresses only" in answer.json()["fields"]["url"][0]
    assert not Subscription.objects.exists()


def test_the_page_refuses_it_too():
    page = Client()
    page.force_login(make_user("ada", "admin"))
    answer = page.post("/webhooks/new/", {"name": "x", "url": "http://169.254.169.254/", "events": ["approved"]})
    assert "169.254.169.254 is 169.254.169.254, a link-local address" in answer.content.decode()
    assert not Subscription.objects.exists()


def test_an_internal_target_saved_before_is_not_sent_to():
    with Receiver(SECRET) as receiver:
        subscribe(receiver.url, ("alert_firing",))  # straight into the database, as an old row would be
        fire_alert()
        delivery = Delivery.objects.get()
        deliver(delivery.pk)
    delivery.refresh_from_db()
    assert receiver.hits == []
    assert delivery.last_error == ("not sent: 127.0.0.1 is 127.0.0.1, a loopback address: webhooks go to public "
                                   "addresses only (an internal receiver needs SLIPWAY_WEBHOOK_ALLOWED_NETWORKS)")


def test_the_name_is_resolved_once_and_the_connection_pinned_to_that_address(settings, monkeypatch):
    """DNS rebinding: the first answer passes the check, later answers point elsewhere; only the first is used."""
    settings.SLIPWAY_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    real, asked = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.example.test":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = "127.0.0.1" if len(asked) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with Receiver(SECRET, answers=(500,)) as receiver:
        url = receiver.url.replace("127.0.0.1", "hooks.example.test")
        subscribe(url, ("alert_firing",))
        fire_alert()
        delivery = Delivery.objects.get()
        deliver(delivery.pk)
    assert len(asked) == 1
    [hit] = receiver.hits
    assert hit.host == url.split("/")[2] and hit.signed
    delivery.refresh_from_db()
    # The receiver answered 500 with a body; only the status is kept (viewers read deliveries).
    assert (delivery.last_response_code, delivery.last_error) == (500, "HTTP 500 Internal Server Error")
