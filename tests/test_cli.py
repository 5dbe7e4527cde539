"""The `slipway` command drives a release from push to rollback against a live server and worker."""

import json

import pytest

from releases.models import ApiToken, ReleasePolicy
from slipway.cli import main
from tests.factories import digits_eval_npz, digits_model

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def token(user, *scopes: str) -> str:
    return ApiToken.issue(user, "cli", list(scopes))[1]


def slipway(capsys, url: str, tok: str, *args: str) -> tuple[int, object]:
    code = main(["--url", url, "--token", tok, *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err.strip())


def test_push_wait_approve_status_and_rollback(celery_worker, live_server, users, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(digits_model().onnx_bytes)
    (tmp_path / "eval.npz").write_bytes(digits_eval_npz())
    ci = token(users["ci"], "builds:write", "releases:read", "rollback")
    alice = token(users["alice"], "approve", "releases:read")
    bob = token(users["bob"], "approve", "releases:read")
    url = live_server.url

    def push(version: str) -> int:
        code, release = slipway(capsys, url, ci, "push", str(tmp_path / "model.onnx"), str(tmp_path / "eval.npz"),
                                "--model", "digits", "--version", version, "--git-commit", "abcdef0",
                                "--task", "classification", "--wait", "awaiting_approval")
        assert code == 0, release
        assert release["status"] == "awaiting_approval"
        assert slipway(capsys, url, alice, "approve", str(release["id"]), "--comment", "ok")[0] == 0
        code, release = slipway(capsys, url, ci, "wait", str(release["id"]), "--until", "awaiting_approval")
        assert release["status"] == "awaiting_approval", release
        assert slipway(capsys, url, bob, "approve", str(release["id"]))[0] == 0
        code, release = slipway(capsys, url, ci, "wait", str(release["id"]), "--until", "released")
        assert release["status"] == "released", release["failure_reason"]
        return release["id"]

    first = push("1")
    code, message = slipway(capsys, url, ci, "rollback", "production", "--reason", "test")
    assert (code, message) == (1, "slipway: HTTP 409: nothing to roll back to in production: "
                                  "no earlier release is warm")
    ReleasePolicy.objects.update(canary_minutes=0, canary_min_requests=0)
    second = push("2")
    code, environments = slipway(capsys, url, ci, "status")
    production = next(e for e in environments["results"] if e["name"] == "production")
    assert {(d["release"], d["role"], d["traffic_percent"]) for d in production["deployments"]} == {
        (second, "active", 100), (first, "warm", 0)}
    code, change = slipway(capsys, url, ci, "rollback", "production", "--reason", "p95 doubled",
                           "--expected-release", str(second))
    assert code == 0 and change["action"] == "rollback" and change["shares"] == {str(first): 100}
    assert slipway(capsys, url, alice, "rollback", "production", "--reason", "x")[1] == (
        "slipway: HTTP 403: this token lacks the 'rollback' scope")
    alice_rollback = token(users["alice"], "rollback")
    assert slipway(capsys, url, alice_rollback, "rollback", "production", "--reason", "x")[1] == (
        "slipway: HTTP 403: alice has no role that may rollback")
