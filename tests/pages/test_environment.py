"""An environment's page (every model's service, its rollback box by role) and a service's page (history,
what was live when, the serving figures), and their query counts. The rollback through HAProxy is in
test_browser.py."""

from datetime import timedelta

import pytest

from releases.models import Deployment, TrafficChange
from tests.browser import client_for
from tests.conftest import make_user
from tests.pages import data as d
from tests.pages import scenes

pytestmark = pytest.mark.django_db
URL = "/environments/production/"
SERVICE = "/environments/production/models/digits/"


@pytest.fixture
def scene(users) -> scenes.Scene:
    return scenes.build(users)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_page_asks_for_a_login(client):
    assert client.get(URL)["Location"] == f"/login/?next={URL}"


def row_of(context, model: str = "digits"):
    return next(r for r in context["rows"] if r.service.model.name == model)


@pytest.fixture
def wine(users, scene):
    """A second model serving in production next to digits, with nothing warm."""
    release = d.make_release(d.make_version(d.make_model("wine"), "2.0.0", users["ci"]), "released", d.STAGES_DONE)
    d.deploy("production", release, "active", 100)
    return release


def test_it_lists_every_model_with_what_serves_at_what_share_and_what_is_kept_warm(users, scene, wine):
    context = client_for(users["victor"]).get(URL).context
    assert [r.service.model.name for r in context["rows"]] == ["digits", "wine"]
    digits = row_of(context)
    assert [(dep.release_id, dep.role, dep.traffic_percent) for dep in digits.deployments] == [
        (scene.serving.pk, "active", 100), (scene.previous.pk, "warm", 0)]
    assert (digits.active.release_id, digits.target.release_id) == (scene.serving.pk, scene.previous.pk)
    assert digits.address.endswith("/v2/models/digits/")
    assert [(dep.release_id, dep.role) for dep in row_of(context, "wine").deployments] == [(wine.pk, "active")]


@pytest.mark.parametrize(("who", "groups"), [("olga", ("on-call",)), ("dave", ("deployer",)), ("ada", ("admin",))])
def test_on_call_deployers_and_admins_get_each_models_rollback_button_naming_what_serves_afterwards(
        users, scene, wine, who, groups):
    response = client_for(make_user(who, *groups)).get(URL)
    assert row_of(response.context).cannot_roll_back is None
    assert row_of(response.context, "wine").cannot_roll_back == (
        "no earlier release of wine is kept warm in production to go back to")
    body = response.content.decode()
    assert (f'data-confirm="Afterwards #{scene.previous.pk} digits:1.3.0 serves 100% of digits\'s traffic in '
            f'production, instead of #{scene.serving.pk} digits:1.4.0."') in body
    assert f'<input type="hidden" name="expected_release" value="{scene.serving.pk}">' in body
    assert f">Roll back digits to #{scene.previous.pk}</button>" in body
    assert 'action="/environments/production/models/digits/rollback/"' in body
    assert ('<button type="button" class="danger" disabled aria-describedby="rollback-why-wine">Roll back wine'
            '</button>') in body


@pytest.mark.parametrize("who", ["victor", "alice"])
def test_others_see_a_disabled_button_and_why(users, scene, who):
    response = client_for(users[who]).get(URL)
    assert row_of(response.context).cannot_roll_back == "only on-call engineers, deployers and admins may roll back"
    assert ('<button type="button" class="danger" disabled aria-describedby="rollback-why-digits">Roll back digits'
            '</button>') in response.content.decode()


def test_with_nothing_warm_or_nothing_serving_the_page_says_so(users, scene):
    olga = client_for(make_user("olga", "on-call"))
    Deployment.objects.filter(role="warm").update(role="stopped")
    assert row_of(olga.get(URL).context).cannot_roll_back == (
        "no earlier release of digits is kept warm in production to go back to")
    Deployment.objects.all().delete()
    context = olga.get(URL).context
    assert row_of(context).cannot_roll_back == "nothing serves digits in production now"
    assert "Nothing of digits runs in production now." in olga.get(URL).content.decode()
    assert context["live"] is False


@pytest.mark.parametrize(("who", "form", "message"), [
    ("victor", {"reason": "bad", "expected_release": "SERVING"},
     "digits in production not rolled back: victor is not on-call, a deployer or an admin."),
    ("olga", {"reason": "  ", "expected_release": "SERVING"},
     "digits in production not rolled back: say why you roll back."),
    ("olga", {"reason": "bad", "expected_release": "PREVIOUS"},
     "digits in production not rolled back: release #PREVIOUS does not serve digits in production; #SERVING does."),
])
def test_a_refused_rollback_explains_itself_and_moves_nothing(users, scene, who, form, message):
    user = make_user("olga", "on-call") if who == "olga" else users[who]
    ids = {"SERVING": str(scene.serving.pk), "PREVIOUS": str(scene.previous.pk)}
    form = {k: ids.get(v, v) for k, v in form.items()} | {"next": "environment"}
    response = client_for(user).post(f"{SERVICE}rollback/", form, follow=True)
    expected = message.replace("#PREVIOUS", f"#{scene.previous.pk}").replace("#SERVING", f"#{scene.serving.pk}")
    assert messages_of(response) == [expected]
    assert response.redirect_chain[-1][0] == URL
    assert Deployment.objects.get(service__environment__name="production", role="active").release == scene.serving
    assert not TrafficChange.objects.filter(action="rollback").exists()


def test_with_nothing_warm_a_rollback_is_refused_with_the_reason(users, scene):
    Deployment.objects.filter(role="warm").update(role="stopped")
    response = client_for(make_user("olga", "on-call")).post(
        f"{SERVICE}rollback/", {"reason": "bad", "expected_release": scene.serving.pk}, follow=True)
    assert messages_of(response) == [
        "digits in production not rolled back: nothing to roll back to for digits in production: "
        "no earlier release is warm."]


def test_a_warm_release_whose_server_is_gone_is_not_rolled_back_to(users, scene):
    """The warm release's recorded server does not answer: traffic stays, and the page says why."""
    Deployment.objects.filter(release=scene.previous).update(instance={
        "kind": "local", "handle": "999999", "release_id": str(scene.previous.pk), "environment": "production",
        "host": "127.0.0.1", "port": 9})
    response = client_for(make_user("olga", "on-call")).post(
        f"{SERVICE}rollback/", {"reason": "bad", "expected_release": scene.serving.pk}, follow=True)
    [message] = messages_of(response)
    assert message.startswith(f"digits in production not rolled back: the warm release #{scene.previous.pk} is "
                              "not ready, so traffic stays where it is: release")
    assert "failed its health check: the server exited" in message
    assert Deployment.objects.get(service__environment__name="production", role="active").release == scene.serving


def test_an_unknown_model_or_environment_is_not_found(users, scene):
    client = client_for(users["victor"])
    assert client.get("/environments/production/models/nope/").status_code == 404
    assert client.get("/environments/nowhere/models/digits/").status_code == 404
    olga = client_for(make_user("olga", "on-call"))
    assert olga.post("/environments/production/models/nope/rollback/", {"reason": "x"}).status_code == 404


def test_history_lists_traffic_changes_newest_first_with_release_names(users, scene):
    rows = client_for(users["victor"]).get(SERVICE).context["history_rows"]
    assert [(c.action, shares, c.actor.username, c.reason) for c, shares in rows] == [
        ("promote", [(f"#{scene.serving.pk} digits:1.4.0", 100)], "ci", "canary analysis passed"),
        ("canary", [(f"#{scene.previous.pk} digits:1.3.0", 90), (f"#{scene.serving.pk} digits:1.4.0", 10)], "ci",
         ""),
        ("deploy", [(f"#{scene.previous.pk} digits:1.3.0", 100)], "ci", "first release"),
    ]


def test_history_is_paginated(users, scene):
    for i in range(20):
        d.traffic("production", d.T0 + timedelta(hours=1, minutes=i), {scene.serving: 100}, "deploy")
    client = client_for(users["victor"])
    assert len(client.get(SERVICE).context["history_rows"]) == 20
    second = client.get(SERVICE + "?history=2&at=2026-03-01T12:15")
    assert [c.action for c, _ in second.context["history_rows"]] == ["promote", "canary", "deploy"]
    assert second.context["live_at"]["rows"] != []  # the question stays answered while paging


@pytest.mark.parametrize(("moment", "served"), [
    ("2026-03-01T11:59:59", None),
    ("2026-03-01T12:00", [("PREVIOUS", 100)]),
    ("2026-03-01T12:15:30", [("PREVIOUS", 90), ("SERVING", 10)]),
    ("2026-03-01T13:15:00+01:00", [("PREVIOUS", 90), ("SERVING", 10)]),  # 12:15 UTC
    ("2026-03-02T00:00", [("SERVING", 100)]),
])
def test_what_was_live_at_a_moment_comes_from_the_latest_change_at_or_before_it(users, scene, moment, served):
    answer = client_for(users["victor"]).get(SERVICE, {"at": moment}).context["live_at"]
    ids = {scene.previous.pk: "PREVIOUS", scene.serving.pk: "SERVING"}
    if served is None:
        assert (answer["change"], answer["rows"]) == (None, [])
    else:
        assert [(ids[r.pk], share) for r, share in answer["rows"]] == served


def test_a_moment_before_any_change_and_a_malformed_one_explain_themselves(users, scene):
    client = client_for(users["victor"])
    body = client.get(SERVICE, {"at": "2026-03-01T11:00"}).content.decode()
    assert "no traffic change is recorded at or before that moment" in body
    for raw in ("yesterday", "2026-13-01T10:00"):
        answer = client.get(SERVICE, {"at": raw}).context["live_at"]
        assert answer["error"] == (f"“{raw}” is not a date and time; use the form YYYY-MM-DDTHH:MM, "
                                   "e.g. 2026-03-01T03:15")


def test_the_serving_figures_hold_each_release_and_the_traffic_changes(users, scene):
    series = client_for(users["victor"]).get(SERVICE).context["series"]
    assert [(s["label"], len(s["points"])) for s in series["series"]] == [
        (f"#{scene.previous.pk} digits:1.3.0", 120), (f"#{scene.serving.pk} digits:1.4.0", 120)]
    start = int(d.T0.timestamp() * 1000)
    assert series["series"][0]["points"][:2] == [[start, 20.0, 0.001, 11.0], [start + 10_000, 21.0, 0.001, 12.0]]
    assert series["marks"] == [[start, "deploy"], [start + 600_000, "canary"], [start + 1_200_000, "promote"]]


def test_the_live_parts_poll_while_something_serves(users, scene):
    live = client_for(users["victor"]).get(f"{URL}live/").content.decode()
    assert 'hx-get="/environments/production/live/" hx-trigger="every 5s"' in live
    live = client_for(users["victor"]).get(f"{SERVICE}live/").content.decode()
    assert 'hx-get="/environments/production/models/digits/live/" hx-trigger="every 5s"' in live


def test_an_unknown_environment_is_not_found(users):
    assert client_for(users["victor"]).get("/environments/nowhere/").status_code == 404


@pytest.mark.parametrize("rows", [1, 50])
def test_the_environment_page_takes_the_same_queries_however_many_rows(users, scene, rows,
                                                                       django_assert_num_queries):
    for i in range(rows):
        d.traffic("production", d.T0 + timedelta(hours=2, seconds=i), {scene.serving: 50, scene.previous: 50},
                  "canary")
        d.samples("production", scene.serving, d.T0 + timedelta(hours=3, minutes=i), 3)
    for i in range(rows // 10):  # more models: the environment page lists each with the same queries
        release = d.make_release(d.make_version(d.make_model(f"m{i}"), "1.0.0", users["ci"]), "released")
        d.deploy("production", release, "active", 100)
    client = client_for(make_user("olga", "on-call"))
    # The monitoring panel loads after the page (monitoring/pages.py); 3 are the drill's: its last one, a
    # running deploy, a running shadow.
    with django_assert_num_queries(19):
        assert client.get(SERVICE, {"at": "2026-03-01T12:15"}).status_code == 200
    with django_assert_num_queries(6):
        assert client.get(f"{URL}live/").status_code == 200


def test_each_release_says_how_long_it_has_served_as_it_does_now(users):
    """From the record of the service's traffic moves, not from when its row last changed: the canary that
    became active 12 minutes ago has served for 12 minutes; the release it replaced is warm since the promotion."""
    from django.utils import timezone

    from releases.models import Service
    from releases.pages.queries import serving_since

    now = timezone.now()
    model = d.make_model("digits")
    old, new = (d.make_release(d.make_version(model, label, users["ci"]), "released") for label in ("1.0", "1.1"))
    d.deploy("production", old, "warm", 0)
    d.deploy("production", new, "active", 100)  # both rows written just now
    d.traffic("production", now - timedelta(minutes=40), {old: 100}, "deploy", users["ci"])
    d.traffic("production", now - timedelta(minutes=12), {old: 90, new: 10}, "canary", users["ci"])
    d.traffic("production", now - timedelta(minutes=7), {new: 100}, "promote", users["ci"])
    body = client_for(make_user("olga", "on-call")).get(SERVICE).content.decode()
    began = timezone.localtime(now - timedelta(minutes=12))
    assert f'title="since {began:%Y-%m-%d %H:%M:%S %Z}">for 12 minutes</time>' in body
    assert "kept warm <time datetime" in body and ">for 7 minutes</time>, in place of" in body
    changes = Service.objects.get(environment__name="production", model=model).traffic_changes.all()
    assert serving_since(changes, {new.pk: 100, old.pk: 0}) == {
        new.pk: (now - timedelta(minutes=12), False), old.pk: (now - timedelta(minutes=7), False)}
    assert serving_since(changes, {new.pk: 100}, limit=2) == {new.pk: (now - timedelta(minutes=12), True)}
