"""Starting and stopping a shadow through the API and the release page: scopes and roles, a 4xx JSON body
for each bad input with nothing stored, one shadow per service (two models in one environment each have
their own), CSRF, and the page's form in Chromium."""

import json
import os
from unittest import mock

import pytest
from django.test import Client

from monitoring.models import ShadowRun
from releases.models import ApiToken, AuditEvent, Deployment, Environment, Release, Service
from slipway.cli import main
from tests.browser import screenshot
from tests.conftest import build_form, make_user, token_client

URL = "/api/v1/environments/{env}/models/{model}/shadow/"


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The runs whose server start was sent to a deploy worker."""
    runs: list[int] = []
    monkeypatch.setattr("workers.shadowing.send_launch", runs.append)
    return runs


def _post(client, body: dict, env: str = "production", model: str = "digits"):
    return client.post(URL.format(env=env, model=model), body, format="json")


@pytest.mark.django_db
def test_every_bad_request_gets_a_4xx_json_body_and_stores_nothing(users, serving, sent) -> None:
    warm, active = serving["ids"]
    ci = token_client(users["ci"])
    wine = ci.post("/api/v1/builds/", build_form(model="wine"), format="multipart").json()["release"]["id"]
    cases = [
        (token_client(users["ci"], ["releases:read"]), {"release": warm}, "production", "digits", 403,
         "this token lacks the 'deploy' scope"),
        (token_client(users["victor"]), {"release": warm}, "production", "digits", 403,
         "victor has no role that may deploy"),
        (ci, {"release": warm}, "nowhere", "digits", 404, "there is no environment 'nowhere'"),
        (ci, {"release": warm}, "production", "nothing", 404, "there is no model 'nothing'"),
        (ci, {"release": 999999}, "production", "digits", 404, "there is no release 999999"),
        (ci, {"release": warm, "share": 0}, "production", "digits", 400, "share must be in (0, 1], not 0"),
        (ci, {"release": warm, "share": 1.5}, "production", "digits", 400, "share must be in (0, 1], not 1.5"),
        (ci, {"release": warm, "minutes": -1}, "production", "digits", 400,
         "minutes must be a finite number, not negative"),
        (ci, {"release": warm, "min_pairs": 10**12}, "production", "digits", 400,
         "min_pairs must be at most 20000, the pairs a server keeps"),
        (ci, {"release": wine}, "production", "digits", 400, f"release #{wine} is a release of wine, not of digits"),
        (ci, {"release": "seven"}, "production", "digits", 400, "release: A valid integer is required."),
        (ci, {"share": 0.5}, "production", "digits", 400, "release: This field is required."),
        (ci, {"release": warm}, "staging", "digits", 409,
         "no release of digits is active in staging: nothing to shadow"),
        (ci, {"release": active}, "production", "digits", 409,
         f"release #{active} is the active release of digits in production"),
    ]
    answers = [(r.status_code, r.json()["detail"]) for r in
                (_post(client, body, env, model) for client, body, env, model, _, _ in cases)]
    assert answers == [(status, detail) for *_, status, detail in cases]
    not_json = ci.post(URL.format(env="production", model="digits"), "{", content_type="application/json")
    assert (not_json.status_code, not_json.json()["error"]) == (400, "parse_error")
    assert (ShadowRun.objects.count(), sent) == (0, [])
    assert ci.get(URL.format(env="production", model="digits")).json() == {
        "error": "not_found", "detail": "no release of digits is in shadow in production"}
    assert ci.delete(URL.format(env="production", model="digits")).status_code == 404


@pytest.mark.django_db
def test_one_shadow_per_service_started_and_stopped_over_the_api(users, serving, sent,
                                                                 django_capture_on_commit_callbacks) -> None:
    warm, active = serving["ids"]
    ci = token_client(users["ci"])
    with django_capture_on_commit_callbacks(execute=True):
        placed = _post(ci, {"release": warm, "share": 0.25, "minutes": 2, "min_pairs": 50})
    assert placed.status_code == 202, placed.json()
    body = placed.json()
    assert {k: body[k] for k in ("environment", "model", "shadow", "active", "share", "minutes", "min_pairs",
                                 "state", "verdict")} == {
        "environment": "production", "model": "digits", "shadow": warm, "active": active, "share": 0.25,
        "minutes": 2.0, "min_pairs": 50, "state": "starting", "verdict": "wait"}
    assert sent == [body["id"]]
    again = _post(ci, {"release": warm})
    assert (again.status_code, again.json()["detail"]) == (
        409, "digits already has a release in shadow in production; stop it first")
    # Another model in the same environment has its own service, and its own shadow.
    wine_ids = [ci.post("/api/v1/builds/", build_form(model="wine", version=v), format="multipart")
                .json()["release"]["id"] for v in ("1", "2")]
    wine = Service.objects.create(environment=Environment.objects.get(name="production"),
                                  model=Release.objects.get(pk=wine_ids[0]).version.model)
    Deployment.objects.create(service=wine, release_id=wine_ids[0], role="active", traffic_percent=100,
                              endpoint="http://127.0.0.1:12", instance={"port": 12})
    assert _post(ci, {"release": wine_ids[1]}, model="wine").status_code == 202
    assert ShadowRun.objects.filter(stopped_at=None).count() == 2
    assert ci.get(URL.format(env="production", model="digits")).json()["id"] == body["id"]
    stopped = ci.delete(URL.format(env="production", model="digits"))
    assert (stopped.status_code, stopped.json()["state"]) == (200, "stopped")
    assert list(AuditEvent.objects.filter(action__startswith="shadow.", release_id=warm)
                .order_by("pk").values_list("action", "actor_label")) == [
        ("shadow.start", "ci (token test)"), ("shadow.stop", "ci (token test)")]
    assert ShadowRun.objects.filter(stopped_at=None).get().service == wine


@pytest.mark.django_db
def test_the_release_page_starts_and_stops_a_shadow_for_deployers_only(users, serving, sent,
                                                                       django_capture_on_commit_callbacks) -> None:
    warm, _ = serving["ids"]
    deployer, viewer = Client(), Client()
    deployer.force_login(users["ci"])
    viewer.force_login(users["victor"])
    release_page = deployer.get(f"/releases/{warm}/").content.decode()
    assert f'hx-get="/monitoring/releases/{warm}/shadow/"' in release_page
    assert "data-start-shadow" in deployer.get(f"/monitoring/releases/{warm}/shadow/").content.decode()
    assert "data-start-shadow" not in viewer.get(f"/monitoring/releases/{warm}/shadow/").content.decode()
    form = {"environment": "production", "share": "0.5", "minutes": "1", "min_pairs": "20"}
    assert viewer.post(f"/monitoring/releases/{warm}/shadow/start", form).status_code == 403
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(users["ci"])
    assert checked.post(f"/monitoring/releases/{warm}/shadow/start", form).status_code == 403
    assert ShadowRun.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        answer = deployer.post(f"/monitoring/releases/{warm}/shadow/start", form, follow=True)
    assert answer.redirect_chain == [(f"/releases/{warm}/#shadow", 302)]
    assert (f"Release #{warm} is being placed in shadow in production" in answer.content.decode())
    run = ShadowRun.objects.get()
    assert (run.share, run.minutes, run.min_pairs, sent) == (0.5, 1.0, 20, [run.pk])
    panel = deployer.get(f"/monitoring/releases/{warm}/shadow/").content.decode()
    assert "(starting)" in panel and "data-stop-shadow" in panel and "data-start-shadow" not in panel
    bad = deployer.post(f"/monitoring/releases/{warm}/shadow/start", form | {"share": "many"}, follow=True)
    assert "not placed in shadow: share must be a number." in bad.content.decode()
    assert viewer.post(f"/monitoring/shadow/{run.pk}/stop").status_code == 403
    deployer.post(f"/monitoring/shadow/{run.pk}/stop")
    run.refresh_from_db()
    assert run.stopped_at is not None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_chromium_starts_a_shadow_from_the_release_page(users, serving, sent, open_as) -> None:
    warm, active = serving["ids"]
    make_user("dora", "deployer")
    page = open_as("dora")
    page.goto(f"/releases/{warm}/")
    form = page.locator("form[data-start-shadow]")
    form.wait_for()
    assert form.locator("select[name=environment]").inner_text() == f"#{active} in production"
    form.locator("input[name=share]").fill("0.3")
    form.locator("button[type=submit]").click()
    page.locator("#shadow [data-shadow-runs]").wait_for()
    assert page.locator("#shadow [data-shadow-runs] tbody th").inner_text() == "production (starting)"
    screenshot(page, "release-shadow")
    assert ShadowRun.objects.get().share == 0.3 and sent == [ShadowRun.objects.get().pk]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_slipway_command_starts_shows_and_stops_a_shadow(users, serving, sent, live_server, capsys) -> None:
    warm, active = serving["ids"]
    raw = ApiToken.issue(users["ci"], "cli", ["deploy", "releases:read"])[1]

    def slipway(*args: str) -> tuple[int, str, str]:
        with mock.patch.dict(os.environ, {"SLIPWAY_TOKEN": raw}):
            code = main(["--url", live_server.url, *args])
        out, err = capsys.readouterr()
        return code, out.strip(), err.strip()

    assert slipway("shadow", "start", "production", "--model", "digits", "--release", str(warm), "--share", "2") == (
        1, "", "slipway: HTTP 400: share must be in (0, 1], not 2")
    assert slipway("shadow", "start", "production", "--model", "digits", "--release", str(warm)) == (
        0, f"release #{warm} in shadow of #{active} for digits in production: starting, 0 pairs, verdict wait", "")
    assert sent == [ShadowRun.objects.get().pk]
    code, out, _ = slipway("--json", "shadow", "show", "production", "--model", "digits")
    assert (code, json.loads(out)["state"]) == (0, "starting")
    assert slipway("shadow", "stop", "production", "--model", "digits")[:2] == (
        0, f"release #{warm} in shadow of #{active} for digits in production: stopped, 0 pairs, verdict wait")
