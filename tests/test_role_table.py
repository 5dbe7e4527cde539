"""Who may change what: every mutating API call and page action by every role, from one table.

API cells are HTTP statuses; 409 means the call was authorised and then refused by the state of things
(nothing is warm to roll back to here). Page cells: "login" (sent to log in first), "forbidden" (refused
for the role, nothing changed), "done", "conflict" (authorised, refused by the state).
"""

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from monitoring.models import Label, MonitoringPolicy
from releases.models import ApiToken, Approval, Artifact, Deployment, Environment, Release, Service
from tests.conftest import ALL_SCOPES, build_form, make_user, token_client
from tests.factories import digits_eval_npz, digits_model
from tests.monitoring.test_alerts import notification
from webhooks.models import Subscription

ROLES = ("anonymous", "viewer", "approver", "deployer", "on-call", "admin", "author", "token-without-scope",
         "no-role")
NOTHING_WARM = "nothing to roll back to for digits in production: no earlier release is warm"

# action: (scope the API call needs, expected outcome for each role in ROLES order)
TABLE: dict[str, tuple[str | None, tuple]] = {
    "api post build": ("builds:write", (401, 403, 403, 201, 403, 201, 201, 403, 403)),
    "api approve": ("approve", (401, 403, 201, 403, 403, 201, 403, 403, 403)),
    "api reject": ("approve", (401, 403, 201, 403, 403, 201, 403, 403, 403)),
    "api cancel": ("deploy", (401, 403, 403, 200, 403, 200, 200, 403, 403)),
    "api rollback": ("rollback", (401, 403, 403, 409, 409, 409, 409, 403, 403)),
    "api create webhook": ("webhooks:write", (401, 403, 403, 403, 403, 201, 403, 403, 403)),
    "api post labels": ("feedback", (401, 403, 403, 200, 200, 200, 200, 403, 403)),
    "api set monitoring policy": ("deploy", (401, 403, 403, 200, 403, 200, 200, 403, 403)),
    # Anyone may report an alert with the scope; only who may roll back makes it roll back (see monitoring).
    "api post alert": ("alerts", (401, 200, 200, 200, 200, 200, 200, 403, 403)),
    # A firing alert under a rollback policy rolls back as the rollback API would for its token: the token needs the
    # rollback scope and its user a role that may roll back (cells: what the rollback API would have answered).
    "api alert rolls back": ("rollback", (401, 403, 403, 409, 409, 409, 409, 403, 403)),
    "page approve": (None, ("login", "forbidden", "done", "forbidden", "forbidden", "done", "forbidden", "login",
                           "forbidden")),
    "page reject": (None, ("login", "forbidden", "done", "forbidden", "forbidden", "done", "forbidden", "login",
                          "forbidden")),
    "page pick candidate": (None, ("login", "forbidden", "done", "forbidden", "forbidden", "done", "forbidden",
                                   "login", "forbidden")),
    "page rollback": (None, ("login", "forbidden", "forbidden", "conflict", "conflict", "conflict", "conflict",
                             "login", "forbidden")),
    # A token is revoked by its owner (otto, on-call) or an admin; to anyone else it does not exist (404).
    "page revoke a token": (None, ("login", "forbidden", "forbidden", "forbidden", "done", "done", "forbidden",
                                   "login", "forbidden")),
    # Tokens are made by staff in the admin site or with `manage.py createtoken`; no role is staff.
    "admin create token": (None, ("login",) * 9),
}
CELLS = [(action, role, expected[i]) for action, (_, expected) in TABLE.items() for i, role in enumerate(ROLES)]
SCOPE_REFUSED = {"api alert rolls back": "the alerts token lacks the 'rollback' scope, so an alert only notifies"}
REFUSALS = ("you are not in the", "you are the author of this build", "is not on-call, a deployer or an admin")


@pytest.fixture
def world(db, settings, tmp_path) -> dict:
    """A user per role, and a release by `author` (a deployer and an approver) waiting for approval,
    with one candidate besides its original model."""
    settings.ARTIFACT_DIR = tmp_path
    people = {"viewer": make_user("victor", "viewer"), "approver": make_user("alice", "approver"),
              "deployer": make_user("dora", "deployer"), "on-call": make_user("otto", "on-call"),
              "admin": make_user("ada", "admin"), "author": make_user("arthur", "deployer", "approver"),
              "token-without-scope": make_user("tobi", "admin"), "no-role": make_user("nadia")}
    response = token_client(people["author"]).post("/api/v1/builds/", build_form(), format="multipart")
    release = Release.objects.get(pk=response.json()["release"]["id"])
    Release.objects.filter(pk=release.pk).update(status="awaiting_approval")
    release.stages.filter(name="gate").update(status="waiting")
    original = release.version.artifact
    candidate = Artifact.objects.create(sha256=original.sha256, size_bytes=original.size_bytes, kind="onnx-fp32",
                                        file_format="onnx", parent=original, release=release)
    serving = Release.objects.create(version=release.version, status="released")  # digits serves, nothing warm
    service = Service.objects.create(environment=Environment.objects.get(name="production"),
                                     model=release.version.model)
    Deployment.objects.create(service=service, release=serving, role="active", traffic_percent=100)
    pager, _ = ApiToken.issue(people["on-call"], "pager", ["alerts"])
    return {"people": people, "release": release, "candidate": candidate, "token": pager}


def api_client(world: dict, role: str, scope: str) -> APIClient:
    if role == "anonymous":
        return APIClient()
    if role == "token-without-scope":
        return token_client(world["people"][role], [s for s in ALL_SCOPES if s != scope])
    return token_client(world["people"][role])


def page_client(world: dict, role: str) -> Client:
    if role == "anonymous":
        return Client()
    if role == "token-without-scope":  # pages take no tokens: the bearer is nobody to them
        _, raw = ApiToken.issue(world["people"][role], "pages", ALL_SCOPES)
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client = Client()
    client.force_login(world["people"][role])
    return client


def call_api(action: str, client: APIClient, release: Release):
    if action == "api post build":
        form = build_form(version="2.0.0", artifact=SimpleUploadedFile("model.onnx", digits_model().onnx_bytes),
                          eval_data=SimpleUploadedFile("eval.npz", digits_eval_npz()))
        return client.post("/api/v1/builds/", form, format="multipart")
    if action == "api rollback":
        return client.post("/api/v1/environments/production/rollback/", {"reason": "errors"}, format="json")
    if action == "api create webhook":
        return client.post("/api/v1/webhooks/", {"name": "chat", "url": "https://hooks.example.test/slipway",
                                                 "events": ["approved"]}, format="json")
    if action == "api post labels":
        return client.post("/api/v1/feedback/", [{"prediction_id": "p-1", "label": 1}], format="json")
    if action == "api set monitoring policy":
        return client.put(f"/api/v1/models/{release.version.model.name}/monitoring/",
                          {"on_alert": "notify", "cooldown_seconds": 600}, format="json")
    if action == "api post alert":
        return client.post("/api/v1/alerts/", {"version": "4", "status": "firing", "alerts": []}, format="json")
    if action == "api alert rolls back":
        MonitoringPolicy.objects.update_or_create(model=release.version.model, defaults={"on_alert": "rollback"})
        return client.post("/api/v1/alerts/", notification(), format="json")
    verb = action.removeprefix("api ")
    return client.post(f"/api/v1/releases/{release.pk}/{verb}/", {"comment": "c", "reason": "r"}, format="json")


def api_outcome(action: str, response) -> tuple[int, str]:
    """(status, detail); an alert's rollback as the rollback API would have answered it."""
    if action != "api alert rolls back" or response.status_code != 200:
        return response.status_code, response.json().get("detail", "")
    (alert,) = response.json()["alerts"]
    if alert["action"] == "rolled_back":
        return 200, ""
    assert alert["action"] == "notified"
    detail = alert["detail"].removeprefix("the rollback failed: ")
    return (409 if detail == NOTHING_WARM else 403), detail


def page_outcome(response) -> str:
    if response.status_code == 403:  # a user in no group: refused before the page's own checks
        assert b"has no role that may view Slipway" in response.content
        return "forbidden"
    if response.status_code == 404:  # another's token: not even shown to be there
        return "forbidden"
    assert response.status_code == 302
    if response["Location"].startswith(("/login/", "/admin/login/")):
        return "login"
    (message,) = get_messages(response.wsgi_request)
    if message.level_tag == "success":
        return "done"
    return "forbidden" if any(r in message.message for r in REFUSALS) else "conflict"


def call_page(action: str, client: Client, world: dict):
    release = world["release"]
    if action in ("page approve", "page reject"):
        decision = action.removeprefix("page ")
        return client.post(f"/releases/{release.pk}/decide/", {"decision": decision, "comment": "c"})
    if action == "page pick candidate":
        return client.post(f"/releases/{release.pk}/pick/", {"artifact": world["candidate"].pk})
    if action == "page rollback":
        return client.post("/environments/production/models/digits/rollback/", {"reason": "errors"})
    if action == "page revoke a token":
        return client.post(f"/tokens/{world['token'].pk}/revoke/")
    return client.post("/admin/releases/apitoken/add/", {"user": world["people"]["admin"].pk, "name": "new",
                                                         "scopes": '["deploy"]'})


@pytest.mark.parametrize(("action", "role", "expected"), CELLS, ids=[f"{a}-{r}" for a, r, _ in CELLS])
def test_role_and_action(world, action, role, expected):
    release, scope = world["release"], TABLE[action][0]
    client = api_client(world, role, scope) if action.startswith("api ") else page_client(world, role)
    tokens_before, approvals_before = ApiToken.objects.count(), Approval.objects.count()
    if action.startswith("api "):
        response = call_api(action, client, release)
        status, detail = api_outcome(action, response)
        assert status == expected, response.json()
        if expected == 409:
            assert detail == NOTHING_WARM
        if expected == 403 and role == "token-without-scope":
            assert detail == SCOPE_REFUSED.get(action, f"this token lacks the '{scope}' scope")
        changed = expected in (200, 201)
    else:
        assert page_outcome(call_page(action, client, world)) == expected
        changed = expected == "done"
    decided = Approval.objects.count() - approvals_before
    assert decided == (1 if changed and action.endswith(("approve", "reject")) else 0)
    release.refresh_from_db()
    assert (release.status == "cancelled") == (changed and action == "api cancel")
    assert ApiToken.objects.count() == tokens_before
    assert ApiToken.objects.get(pk=world["token"].pk).revoked == (changed and action == "page revoke a token")
    assert Subscription.objects.count() == (1 if changed and action == "api create webhook" else 0)
    assert Label.objects.count() == 0  # no prediction has been collected: a label is counted unknown
