"""The home page and the environments list, for users of different roles."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from releases.models import Approval, StageRun
from tests.browser import client_for
from tests.conftest import make_user
from tests.pages import data as d
from tests.pages import scenes

pytestmark = pytest.mark.django_db

PAGES = ["home", "environments"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_ask_for_a_login(client, page):
    response = client.get(reverse(page))
    assert (response.status_code, response["Location"]) == (302, f"/login/?next={reverse(page)}")


def test_an_approver_sees_what_is_live_and_what_waits_for_them(users):
    scene = scenes.build(users)
    failed = d.make_release(d.make_version(scene.at_gate.version.model, "0.9.0", users["ci"]), "failed",
                            [("validate", "failed")], failure_reason="validate: model: expects 64 pixels, got 10")
    response = client_for(users["alice"]).get("/")
    assert response.status_code == 200
    assert [(e.name, [(dep.release_id, dep.traffic_percent) for dep in e.serving])
            for e in response.context["environments"]] == [
        ("staging", [(scene.serving.pk, 100)]), ("production", [(scene.serving.pk, 100)])]
    assert [r.pk for r in response.context["waiting"]] == [scene.at_gate.pk]
    assert [r.pk for r in response.context["recent"]] == [failed.pk] + [r.pk for r in reversed(scene.releases)]
    assert [r.pk for r in response.context["failures"]] == [failed.pk]
    assert "validate: model: expects 64 pixels, got 10" in response.content.decode()


@pytest.mark.parametrize(("who", "why"), [("victor", "a viewer"), ("ci", "the author")])
def test_nothing_waits_for_someone_who_cannot_approve(users, who, why):
    scenes.build(users)
    response = client_for(users[who]).get("/")
    assert response.context["waiting"] == []
    assert "Nothing waits for your approval." in response.content.decode()


def test_a_release_leaves_my_list_once_i_decided_and_comes_back_at_the_production_gate(users):
    scene = scenes.build(users)
    Approval.objects.create(release=scene.at_gate, gate="release", user=users["alice"], decision="approve")
    assert client_for(users["alice"]).get("/").context["waiting"] == []
    StageRun.objects.filter(release=scene.at_gate, name="gate").update(status="succeeded")
    StageRun.objects.create(release=scene.at_gate, name="production_gate", position=3, status="waiting")
    response = client_for(users["alice"]).get("/")
    assert [(r.pk, r.at_production) for r in response.context["waiting"]] == [(scene.at_gate.pk, True)]
    assert "production gate" in response.content.decode()


def test_a_model_with_its_own_approver_group_waits_for_that_group_and_admins(users):
    scene = scenes.build(users)
    ml = Group.objects.create(name="ml-leads")
    scene.at_gate.version.model.policy.approver_group = ml
    scene.at_gate.version.model.policy.save()
    assert client_for(users["alice"]).get("/").context["waiting"] == []
    lead, admin = make_user("lena", "viewer"), make_user("ada", "admin")
    lead.groups.add(ml)
    for user in (lead, admin):
        assert [r.pk for r in client_for(user).get("/").context["waiting"]] == [scene.at_gate.pk]


def test_an_empty_installation_says_what_to_do(users):
    body = client_for(users["victor"]).get("/").content.decode()
    assert "Nothing serves in production yet." in body
    assert "No releases yet. CI posts builds to <code>/api/v1/builds/</code>" in body
    assert "No release has failed." in body


def test_the_environments_list_shows_each_with_what_serves(users):
    scene = scenes.build(users)
    response = client_for(users["victor"]).get("/environments/")
    assert [(e.name, [d.release_id for d in e.serving]) for e in response.context["environments"]] == [
        ("staging", [scene.serving.pk]), ("production", [scene.serving.pk])]


@pytest.mark.parametrize("versions", [1, 30])
def test_home_takes_the_same_queries_however_many_releases(users, versions, django_assert_num_queries):
    scene = scenes.build(users)
    made = [d.make_release(d.make_version(scene.at_gate.version.model, f"2.{i}", users["ci"]), "awaiting_approval")
            for i in range(versions)]
    client = client_for(users["alice"])
    with django_assert_num_queries(8):
        response = client.get("/")
    assert response.status_code == 200
    # What waits for alice, oldest first, at most 20 rows; each row links to its release.
    expected = [r.pk for r in sorted([scene.at_gate, *made], key=lambda r: (r.created_at, r.pk))][:20]
    assert [r.pk for r in response.context["waiting"]] == expected
    body = response.content.decode()
    assert all(f'href="/releases/{pk}/"' in body for pk in expected)


def test_a_missing_page_says_what_may_be_wrong_and_where_to_go(users):
    response = client_for(users["victor"]).get("/releases/12345/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "the release, model or environment may have another number or name" in body
    assert '<a href="/environments/">all environments</a>' in body
