"""An environment's page: what serves, the rollback box by role, history, what was live when,
the serving figures, and its query count. The rollback through HAProxy is in test_browser.py."""

from datetime import timedelta

import pytest

from releases.models import Deployment, TrafficChange
from tests.browser import client_for
from tests.conftest import make_user
from tests.pages import data as d
from tests.pages import scenes

pytestmark = pytest.mark.django_db
URL = "/environments/production/"


@pytest.fixture
def scene(users) -> scenes.Scene:
    return scenes.build(users)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_page_asks_for_a_login(client):
    assert client.get(URL)["Location"] == f"/login/?next={URL}"


def test_it_shows_what_serves_at_what_share_and_what_is_kept_warm(users, scene):
    context = client_for(users["victor"]).get(URL).context
    assert [(dep.release_id, dep.role, dep.traffic_percent) for dep in context["deployments"]] == [
        (scene.serving.pk, "active", 100), (scene.previous.pk, "warm", 0)]
    assert (context["active"].release_id, context["target"].release_id) == (scene.serving.pk, scene.previous.pk)


@pytest.mark.parametrize(("who", "groups"), [("olga", ("on-call",)), ("dave", ("deployer",)), ("ada", ("admin",))])
def test_on_call_deployers_and_admins_get_the_rollback_button_naming_what_serves_afterwards(users, scene, who,
                                                                                           groups):
    response = client_for(make_user(who, *groups)).get(URL)
    assert response.context["cannot_roll_back"] is None
    body = response.content.decode()
    assert (f'data-confirm="Afterwards #{scene.previous.pk} digits:1.3.0 serves 100% of production\'s traffic, '
            f'instead of #{scene.serving.pk} digits:1.4.0."') in body
    assert f'<input type="hidden" name="expected_release" value="{scene.serving.pk}">' in body
    assert f">Roll back to #{scene.previous.pk}</button>" in body


@pytest.mark.parametrize("who", ["victor", "alice"])
def test_others_see_a_disabled_button_and_why(users, scene, who):
    response = client_for(users[who]).get(URL)
    assert response.context["cannot_roll_back"] == "only on-call engineers, deployers and admins may roll back"
    assert '<button type="button" class="danger" disabled aria-describedby="rollback-why">Roll back</button>' in (
        response.content.decode())


def test_with_nothing_warm_or_nothing_serving_the_page_says_so(users, scene):
    olga = client_for(make_user("olga", "on-call"))
    Deployment.objects.filter(role="warm").update(role="stopped")
    assert olga.get(URL).context["cannot_roll_back"] == (
        "no earlier release is kept warm in production to go back to")
    Deployment.objects.all().delete()
    context = olga.get(URL).context
    assert context["cannot_roll_back"] == "nothing serves in production now"
    assert "Nothing is deployed in production yet." in olga.get(URL).content.decode()
    assert context["live"] is False


@pytest.mark.parametrize(("who", "form", "message"), [
    ("victor", {"reason": "bad", "expected_release": "SERVING"},
     "Not rolled back: victor is not on-call, a deployer or an admin."),
    ("olga", {"reason": "  ", "expected_release": "SERVING"}, "Not rolled back: say why you roll back."),
    ("olga", {"reason": "bad", "expected_release": "PREVIOUS"},
     "Not rolled back: release #PREVIOUS does not serve in production; #SERVING does."),
])
def test_a_refused_rollback_explains_itself_and_moves_nothing(users, scene, who, form, message):
    user = make_user("olga", "on-call") if who == "olga" else users[who]
    ids = {"SERVING": str(scene.serving.pk), "PREVIOUS": str(scene.previous.pk)}
    form = {k: ids.get(v, v) for k, v in form.items()}
    response = client_for(user).post(f"{URL}rollback/", form, follow=True)
    expected = message.replace("#PREVIOUS", f"#{scene.previous.pk}").replace("#SERVING", f"#{scene.serving.pk}")
    assert messages_of(response) == [expected]
    assert Deployment.objects.get(environment__name="production", role="active").release == scene.serving
    assert not TrafficChange.objects.filter(action="rollback").exists()


def test_with_nothing_warm_a_rollback_is_refused_with_the_reason(users, scene):
    Deployment.objects.filter(role="warm").update(role="stopped")
    response = client_for(make_user("olga", "on-call")).post(
        f"{URL}rollback/", {"reason": "bad", "expected_release": scene.serving.pk}, follow=True)
    assert messages_of(response) == [
        "Not rolled back: nothing to roll back to in production: no earlier release is warm."]


def test_history_lists_traffic_changes_newest_first_with_release_names(users, scene):
    rows = client_for(users["victor"]).get(URL).context["history_rows"]
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
    assert len(client.get(URL).context["history_rows"]) == 20
    second = client.get(URL + "?history=2&at=2026-03-01T12:15")
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
    answer = client_for(users["victor"]).get(URL, {"at": moment}).context["live_at"]
    ids = {scene.previous.pk: "PREVIOUS", scene.serving.pk: "SERVING"}
    if served is None:
        assert (answer["change"], answer["rows"]) == (None, [])
    else:
        assert [(ids[r.pk], share) for r, share in answer["rows"]] == served


def test_a_moment_before_any_change_and_a_malformed_one_explain_themselves(users, scene):
    client = client_for(users["victor"])
    body = client.get(URL, {"at": "2026-03-01T11:00"}).content.decode()
    assert "no traffic change is recorded at or before that moment" in body
    for raw in ("yesterday", "2026-13-01T10:00"):
        answer = client.get(URL, {"at": raw}).context["live_at"]
        assert answer["error"] == (f"“{raw}” is not a date and time; use the form YYYY-MM-DDTHH:MM, "
                                   "e.g. 2026-03-01T03:15")


def test_the_serving_figures_hold_each_release_and_the_traffic_changes(users, scene):
    series = client_for(users["victor"]).get(URL).context["series"]
    assert [(s["label"], len(s["points"])) for s in series["series"]] == [
        (f"#{scene.previous.pk} digits:1.3.0", 120), (f"#{scene.serving.pk} digits:1.4.0", 120)]
    start = int(d.T0.timestamp() * 1000)
    assert series["series"][0]["points"][:2] == [[start, 20.0, 0.001, 11.0], [start + 10_000, 21.0, 0.001, 12.0]]
    assert series["marks"] == [[start, "deploy"], [start + 600_000, "canary"], [start + 1_200_000, "promote"]]


def test_the_live_part_polls_while_something_serves(users, scene):
    live = client_for(users["victor"]).get(f"{URL}live/").content.decode()
    assert 'hx-get="/environments/production/live/" hx-trigger="every 5s"' in live
    assert "Roll back" not in live  # the rollback form stays put while the figures refresh


def test_an_unknown_environment_is_not_found(users):
    assert client_for(users["victor"]).get("/environments/nowhere/").status_code == 404


@pytest.mark.parametrize("rows", [1, 50])
def test_the_environment_page_takes_the_same_queries_however_many_rows(users, scene, rows,
                                                                       django_assert_num_queries):
    for i in range(rows):
        d.traffic("production", d.T0 + timedelta(hours=2, seconds=i), {scene.serving: 50, scene.previous: 50},
                  "canary")
        d.samples("production", scene.serving, d.T0 + timedelta(hours=3, minutes=i), 3)
    client = client_for(make_user("olga", "on-call"))
    with django_assert_num_queries(16):  # the monitoring panel loads after the page (monitoring/pages.py)
        response = client.get(URL, {"at": "2026-03-01T12:15"})
    assert response.status_code == 200
    # The history's first page: newest first, the canary moves made above on top, 20 rows a page.
    history = list(response.context["history"].object_list)
    assert len(history) == 20 or response.context["history"].paginator.count == len(history)
    assert [c.at for c in history[:min(rows, 20)]] == [
        d.T0 + timedelta(hours=2, seconds=i) for i in reversed(range(rows))][:20]
    assert len(response.context["history_rows"]) == len(history)
    with django_assert_num_queries(10):
        assert client.get(f"{URL}live/").status_code == 200


def test_each_release_says_how_long_it_has_served_as_it_does_now(users):
    """From the record of traffic moves, not from when its row last changed: the canary that became
    active 12 minutes ago has served for 12 minutes; the release it replaced is warm since the promotion."""
    from django.utils import timezone

    from releases.models import Environment
    from releases.pages.queries import serving_since

    now = timezone.now()
    model = d.make_model("digits")
    old, new = (d.make_release(d.make_version(model, label, users["ci"]), "released") for label in ("1.0", "1.1"))
    d.deploy("production", old, "warm", 0)
    d.deploy("production", new, "active", 100)  # both rows written just now
    d.traffic("production", now - timedelta(minutes=40), {old: 100}, "deploy", users["ci"])
    d.traffic("production", now - timedelta(minutes=12), {old: 90, new: 10}, "canary", users["ci"])
    d.traffic("production", now - timedelta(minutes=7), {new: 100}, "promote", users["ci"])
    body = client_for(make_user("olga", "on-call")).get(URL).content.decode()
    began = timezone.localtime(now - timedelta(minutes=12))
    assert f'title="since {began:%Y-%m-%d %H:%M:%S %Z}">for 12 minutes</time>' in body
    assert "kept warm <time datetime" in body and ">for 7 minutes</time>, in place of" in body
    changes = Environment.objects.get(name="production").traffic_changes.all()
    assert serving_since(changes, {new.pk: 100, old.pk: 0}) == {
        new.pk: (now - timedelta(minutes=12), False), old.pk: (now - timedelta(minutes=7), False)}
    assert serving_since(changes, {new.pk: 100}, limit=2) == {new.pk: (now - timedelta(minutes=12), True)}
