"""The dashboard in real headless Chromium: a build reaches its gate live, a second person approves
it, the charts get their data, and an on-call engineer rolls one model of two back through HAProxy."""

from datetime import timedelta
from itertools import combinations

import pytest

from releases.models import Approval, Deployment, Release, StageRun
from tests.browser import screenshot
from tests.conftest import build_form, make_user, token_client
from tests.haproxy_scene import served_by
from tests.pages import data as d
from tests.pages import scenes
from tests.reliability.drills import wait_for_stage

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def chart_data(page, canvas_id: str) -> list[list]:
    """The data of each dataset of the Chart.js instance drawn on that canvas."""
    return page.evaluate("id => Chart.getChart(document.getElementById(id)).data.datasets.map(s => s.data)",
                         canvas_id)


def test_a_build_reaches_its_gate_live_and_a_second_person_approves_it(celery_worker, users, open_as):
    alice = open_as("alice")
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    assert response.status_code == 201, response.json()
    release_id = response.json()["release"]["id"]

    alice.goto(f"/releases/{release_id}/")
    alice.evaluate("window.loadedOnce = true")
    assert alice.locator("#release-live").get_attribute("hx-get") == f"/releases/{release_id}/live/"
    screenshot(alice, "release-running")
    status = alice.locator("#status-title .status")
    status.filter(has_text="awaiting approval").wait_for(timeout=60_000)
    assert alice.evaluate("window.loadedOnce") is True  # htmx swapped it in; the page never reloaded
    assert alice.locator("#release-live").get_attribute("hx-get") is None  # settled: no more polling
    stages = dict(zip(alice.locator(".stage-head strong").all_inner_texts(),
                      alice.locator(".stage-head .status").all_inner_texts(), strict=True))
    names = list(stages)
    gate = names.index("gate")
    assert [stages[n] for n in names[:gate]] == ["succeeded"] * gate, stages  # validate, evaluate, ...
    assert stages["gate"] == "waiting"
    assert {stages[n] for n in names[gate + 1:]} == {"pending"}
    assert alice.locator("#approvals .waiting").inner_text() == (
        "Waiting at the release gate for 1 more approval from any of: alice, bob (or an admin).")

    author = open_as("ci")
    author.goto(f"/releases/{release_id}/")
    assert author.locator("#cannot-approve").inner_text() == (
        "You cannot decide on this release: you are the author of this build; someone else must approve it.")
    assert author.get_by_role("button", name="Approve").count() == 0

    screenshot(alice, "release-at-gate")
    alice.get_by_label("Comment").fill("Accuracy as before; latency fine.")
    alice.get_by_role("button", name="Approve").click()
    alice.get_by_role("status").filter(has_text="Your approval is recorded.").wait_for()
    assert alice.locator("#approvals .decisions li").first.inner_text().startswith("approved alice at the release gate")
    assert alice.locator("#approvals blockquote").inner_text() == "Accuracy as before; latency fine."
    # What happens next: the gate passed on alice's approval, and the worker ships the release to staging.
    gate = StageRun.objects.get(release_id=release_id, name="gate")
    assert (gate.status, gate.error) == ("succeeded", "")
    assert list(Approval.objects.filter(release_id=release_id).values_list("user__username", "gate", "decision")) == [
        ("alice", "release", "approve")]
    wait_for_stage(release_id, "deploy_staging", "succeeded")
    assert Deployment.objects.get(service__environment__name="staging", release_id=release_id).role == "active"
    screenshot(alice, "release-approved")


def test_the_charts_get_their_data_on_each_page(users, open_as):
    scene = scenes.build(users)
    page = open_as("bob")
    screenshot(page, "home")

    page.goto("/models/digits/")
    assert page.locator("canvas[data-chart=trend]").count() == 3
    assert chart_data(page, "chart-task") == [[0.93, 0.935, 0.94, 0.945, 0.95, 0.958]]
    assert chart_data(page, "chart-p95") == [[9.0, 8.5, 8.0, 7.5, 7.0, 2.9]]
    assert chart_data(page, "chart-size") == [[2.0, 1.9, 1.8, 1.7, 1.6, 0.4]]
    screenshot(page, "model")

    page.goto(f"/releases/{scene.at_gate.pk}/")
    others, chosen, budget = chart_data(page, "chart-plane")
    assert [(p["label"], p["x"], p["low"], p["high"], p["y"]) for p in others] == [
        ("original", 1.0, 1.0, 1.0, 0.962), ("int8-static", 0.3922, 0.3922, 0.3922, 0.941),
        ("fp16", 0.94, 0.85, 1.05, 0.962)]
    assert [(p["label"], p["x"], p["y"]) for p in chosen] == [("int8-dynamic", 0.4314, 0.958)]
    assert [p["y"] for p in budget] == [pytest.approx(0.952), pytest.approx(0.952)]
    plane = "document.getElementById('chart-plane')"
    for phone in (False, True):  # original and fp16 sit 0.3 ms apart at the same accuracy
        if phone:
            laptop_width = page.evaluate(f"Chart.getChart({plane}).width")
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_function(f"w => Chart.getChart({plane}).width !== w", arg=laptop_width)
        labels = page.evaluate(f"Chart.getChart({plane}).$slipwayLabels")
        assert sorted(box["label"] for box in labels) == ["fp16", "int8-dynamic", "int8-static", "original"]
        assert [(a["label"], b["label"]) for a, b in combinations(labels, 2) if overlap(a, b)] == []
    page.set_viewport_size({"width": 1280, "height": 800})
    screenshot(page, "release-candidates")

    page.goto("/environments/production/models/digits/")
    for canvas in ("chart-rps", "chart-errors", "chart-latency"):
        assert [len(points) for points in chart_data(page, canvas)] == [120, 120]
    marks = page.evaluate("Chart.getChart(document.getElementById('chart-rps')).options.plugins.slipwayMarks.marks")
    assert [action for _, action in marks] == ["deploy", "canary", "promote"]
    screenshot(page, "environment")

    page.evaluate("window.loadedOnce = true")
    d.samples("production", scene.serving, d.T0 + timedelta(hours=1), 1, rps=99.0)
    page.wait_for_function(
        "() => Chart.getChart(document.getElementById('chart-rps'))?.data.datasets[1].data.length === 121",
        timeout=8000)  # the live area refreshes every 5 s
    assert page.evaluate("window.loadedOnce") is True


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def test_every_page_opens_without_an_error(users, open_as):
    """Each page of a populated installation, in Chromium: no console or page error (the open_as
    fixture fails the test on any), and a screenshot at both widths to look at."""
    scene = scenes.build(users)
    make_user("ada", "admin")
    page = open_as("ada")
    for name, url in (("home", "/"), ("models", "/models/"), ("model", "/models/digits/"),
                      ("release-at-gate", f"/releases/{scene.at_gate.pk}/"),
                      ("release-serving", f"/releases/{scene.serving.pk}/"), ("environments", "/environments/"),
                      ("environment-production", "/environments/production/"),
                      ("environment-staging", "/environments/staging/"),
                      ("service-production", "/environments/production/models/digits/"), ("health", "/health/"),
                      ("workers", "/workers/"), ("webhooks", "/webhooks/")):
        response = page.goto(url)
        assert response.status == 200, url
        page.wait_for_load_state("networkidle")
        screenshot(page, f"page-{name}")


def test_pages_work_from_the_keyboard(users, open_as):
    scenes.build(users)
    page = open_as("alice")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "staging"  # the first link in the page body



def test_an_on_call_engineer_rolls_one_model_of_two_back_in_one_click(production_behind_haproxy, users, open_as):
    releases, config = production_behind_haproxy["releases"], production_behind_haproxy["config"]
    previous, serving, wine = releases["1.0.0"], releases["1.1.0"], releases["2.0.0"]
    assert (served_by(config, "digits"), served_by(config, "wine")) == (str(serving.pk), str(wine.pk))
    make_user("olga", "on-call")

    viewer = open_as("victor")
    viewer.goto("/environments/production/")
    assert viewer.get_by_role("button", name="Roll back digits").is_disabled()
    assert viewer.locator("#rollback-why-digits").inner_text() == (
        "You cannot roll back digits now: only on-call engineers, deployers and admins may roll back.")

    page = open_as("olga")
    page.goto("/environments/production/")
    card = page.locator("#service-digits")
    card.get_by_label("Why").fill("error rate up since the promotion")
    card.get_by_role("button", name=f"Roll back digits to #{previous.pk}").click()
    dialog = page.get_by_role("dialog")
    assert dialog.locator("#confirm-text").inner_text() == (
        f"Afterwards #{previous.pk} digits:1.0.0 serves 100% of digits's traffic in production, "
        f"instead of #{serving.pk} digits:1.1.0.")
    screenshot(page, "rollback-confirm")
    # How fast is bench/rollback.py's figure; a timing here would only measure the test machine's load.
    dialog.get_by_role("button", name="Yes, roll back").click()
    page.get_by_role("status").filter(has_text="Rolled back digits in production").wait_for()

    assert page.get_by_role("status").inner_text() == (
        f"Rolled back digits in production: #{previous.pk} digits:1.0.0 at 100% serves now.")
    assert (served_by(config, "digits"), served_by(config, "wine")) == (str(previous.pk), str(wine.pk))
    rows = page.locator("#service-digits tbody tr")
    assert [cell.strip() for cell in rows.first.inner_text().split("\t")[:3]] == [
        f"#{previous.pk} digits:1.0.0", "active", "100%"]
    wine_rows = page.locator("#service-wine tbody tr")
    assert [cell.strip() for cell in wine_rows.first.inner_text().split("\t")[:3]] == [
        f"#{wine.pk} wine:2.0.0", "active", "100%"]
    assert list(Deployment.objects.filter(service__model__name="digits").order_by("release_id")
                .values_list("role", "traffic_percent")) == [("active", 100), ("stopped", 0)]
    assert list(Deployment.objects.filter(service__model__name="wine").order_by("release_id")
                .values_list("role", "traffic_percent")) == [("warm", 0), ("active", 100)]
    assert Release.objects.get(pk=serving.pk).status == "rolled_back"
    assert Release.objects.get(pk=wine.pk).status == "released"
    screenshot(page, "environment-after-rollback")

    page.get_by_role("link", name="digits", exact=True).first.click()
    page.locator("#history").wait_for()
    assert page.locator("#history tbody tr").first.inner_text().split("\t")[1:] == [
        "rollback", f"#{previous.pk} digits:1.0.0 · 100%", "olga", "error rate up since the promotion"]
    marks = page.evaluate("Chart.getChart(document.getElementById('chart-rps')).options.plugins.slipwayMarks.marks")
    assert [action for _, action in marks] == ["deploy", "promote", "rollback"]
    screenshot(page, "service-after-rollback")
