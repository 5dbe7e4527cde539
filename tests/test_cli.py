"""The `slipway` command drives a release from push to rollback against a live server and worker."""

import hashlib
import json
import os
from unittest import mock

import pytest

from releases import routing
from releases.models import ApiToken, Deployment, ModelVersion, ReleasePolicy, RollbackDrill
from shipping.ports import ephemeral_port
from slipway.cli import BuildBody, main
from tests.factories import digits_eval_npz, digits_model
from tests.releases.test_llm_builds_api import EVAL, good_files, hf_tar
from tests.reliability.test_two_web_processes import start_web, wait_up

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def token(user, *scopes: str) -> str:
    return ApiToken.issue(user, "cli", list(scopes))[1]


def slipway(capsys, url: str, tok: str, *args: str) -> tuple[int, object]:
    with mock.patch.dict(os.environ, {"SLIPWAY_TOKEN": tok}):
        code = main(["--url", url, "--json", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err.strip())


def for_people(capsys, url: str, tok: str, *args: str) -> tuple[int, str, str]:
    with mock.patch.dict(os.environ, {"SLIPWAY_TOKEN": tok}):
        code = main(["--url", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_push_streams_a_build_of_several_mib_whole(live_server, users, tmp_path, capsys, settings):
    """A language model's tar bigger than one read goes up whole, as one streamed PUT."""
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    tar = hf_tar(good_files() | {"padding.txt": os.urandom(2 * BuildBody.CHUNK + 12345)})  # its buffer reused
    (tmp_path / "chat.tar").write_bytes(tar)
    (tmp_path / "eval.jsonl").write_bytes(EVAL)
    ci = token(users["ci"], "builds:write")
    code, build = slipway(capsys, live_server.url, ci, "push", str(tmp_path / "chat.tar"), str(tmp_path / "eval.jsonl"),
                          "--model", "chat", "--version", "1", "--git-commit", "abcdef0", "--task", "language_model")
    assert code == 0, build
    version = ModelVersion.objects.get(label="1")
    assert (version.artifact.sha256, version.artifact.size_bytes) == (hashlib.sha256(tar).hexdigest(), len(tar))
    assert version.eval_data.sha256 == hashlib.sha256(EVAL).hexdigest()


def test_push_sends_20_kb_of_metadata_through_gunicorn(users, tmp_path, capsys):
    """Under gunicorn (the demo's and the image's server) a request line over 4094 bytes is refused before
    the app sees it: the metadata goes first in the body, so 20 KB of it (64 KiB allowed) gets through."""
    port = ephemeral_port()
    web = start_web(port, tmp_path, {})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url)
        (tmp_path / "model.onnx").write_bytes(digits_model().onnx_bytes)
        (tmp_path / "eval.npz").write_bytes(digits_eval_npz())
        ci = token(users["ci"], "builds:write")
        metadata = {"dataset": "digits", "notes": "n" * 20_000}

        def push(version: str, sent: str) -> tuple[int, object]:
            return slipway(capsys, url, ci, "push", str(tmp_path / "model.onnx"), str(tmp_path / "eval.npz"),
                           "--model", "digits", "--version", version, "--git-commit", "abcdef0", "--task",
                           "classification", "--metadata", sent)

        code, build = push("1", json.dumps(metadata))
        assert code == 0, build
        assert ModelVersion.objects.get(label="1").metadata == metadata
        assert push("2", "[1, 2]") == (1, "slipway: HTTP 400: metadata: must be a JSON object, not an array")
        assert not ModelVersion.objects.filter(label="2").exists()
    finally:
        web.terminate()
        web.wait(timeout=20)


def test_push_wait_approve_status_and_rollback(celery_worker, beat, live_server, users, tmp_path, capsys):
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
    assert slipway(capsys, url, ci, "wait", str(first), "--until", "rolled_back", "--timeout", "0")[0] == 3
    code, out, _ = for_people(capsys, url, ci, "status", str(first))
    assert code == 0 and out.splitlines()[:2] == [f"release #{first}  digits 1  released", ""]
    assert out.splitlines()[2].split() == ["STAGE", "STATUS", "ATTEMPT", "TOOK", "NOTE"]
    assert [line.split()[:2] for line in out.splitlines()[3:12]] == [
        ["validate", "succeeded"], ["convert", "succeeded"], ["compress", "succeeded"], ["evaluate", "succeeded"],
        ["gate", "succeeded"], ["package", "succeeded"], ["deploy_staging", "succeeded"],
        ["production_gate", "succeeded"], ["canary", "succeeded"]]
    assert out.splitlines()[-2:] == ["  approved at release by alice: ok", "  approved at production by bob"]
    code, message = slipway(capsys, url, ci, "rollback", "production", "--model", "digits", "--reason", "test")
    assert (code, message) == (1, "slipway: HTTP 409: nothing to roll back to for digits in production: "
                                  "no earlier release is warm")
    code, message = slipway(capsys, url, ci, "rollback", "production", "--model", "nope", "--reason", "test")
    assert (code, message) == (1, "slipway: HTTP 404: model 'nope' has never served in production")
    ReleasePolicy.objects.update(canary_minutes=0, canary_min_requests=0)
    second = push("2")
    code, environments = slipway(capsys, url, ci, "status")
    production = next(e for e in environments["results"] if e["name"] == "production")
    [digits] = production["services"]
    assert (digits["model"], digits["path"], digits["canary"]) == ("digits", "/v2/models/digits/", None)
    assert {(d["release"], d["role"], d["traffic_percent"]) for d in digits["deployments"]} == {
        (second, "active", 100), (first, "warm", 0)}
    code, out, _ = for_people(capsys, url, ci, "status")
    rows = [line.split()[:8] for line in out.splitlines()]
    assert rows[0] == ["ENVIRONMENT", "TARGET", "PORT", "RELEASE", "MODEL", "VERSION", "ROLE", "TRAFFIC"]
    assert sorted(r[3:] for r in rows[1:] if r[0] == "production") == [
        [f"#{first}", "digits", "1", "warm", "0%"], [f"#{second}", "digits", "2", "active", "100%"]]
    code, out, _ = for_people(capsys, url, ci, "rollback", "production", "--model", "digits", "--reason",
                              "p95 doubled", "--expected-release", str(second))
    assert (code, out) == (0, f"rollback of digits by ci: release #{first}: 100%\n")
    assert slipway(capsys, url, alice, "rollback", "production", "--reason", "x")[1] == (
        "slipway: HTTP 403: this token lacks the 'rollback' scope")
    alice_rollback = token(users["alice"], "rollback")
    assert slipway(capsys, url, alice_rollback, "rollback", "production", "--reason", "x")[1] == (
        "slipway: HTTP 403: alice has no role that may rollback")


def test_drill_from_the_command_line(production_behind_haproxy, live_server, users, capsys):
    releases, url = production_behind_haproxy["releases"], live_server.url
    ci = token(users["ci"], "rollback")
    code, out, _ = for_people(capsys, url, ci, "drill", "production", "--model", "digits")
    drill = RollbackDrill.objects.get()
    assert (code, out) == (0, f"drill of digits in production ok: back to #{releases['1.0.0'].pk} in "
                              f"{drill.back_ms} ms, forward to #{releases['1.1.0'].pk} in {drill.forward_ms} ms\n")
    Deployment.objects.filter(release=releases["1.9.0"]).update(role="stopped")
    assert slipway(capsys, url, ci, "drill", "production", "--model", "wine") == (
        1, "slipway: HTTP 409: no rollback drill of wine in production: no earlier release of wine in production "
           "is kept warm to roll back to")
    warm = Deployment.objects.select_related("service__environment").get(release=releases["1.0.0"])
    routing.target_for(warm.service.environment).stop(routing.instance_of(warm), timeout=10)
    code, out, _ = for_people(capsys, url, ci, "drill", "production", "--model", "digits")
    assert code == 3 and out.startswith(f"drill of digits in production failed: not rolled back, "
                                        f"#{releases['1.1.0'].pk} serves on: the warm release")
