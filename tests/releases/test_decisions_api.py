"""Cancelling a release over the API: who may, what happens to its stages, and when it is too late."""

import pytest

from releases.models import Release
from tests.conftest import build_form, token_client


@pytest.fixture
def release_id(users, settings, tmp_path) -> int:
    settings.ARTIFACT_DIR = tmp_path
    return token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart").json()["release"]["id"]


def test_a_deployer_cancels_a_release_and_its_stages_are_skipped(users, release_id):
    response = token_client(users["ci"]).post(f"/api/v1/releases/{release_id}/cancel/", {"reason": "wrong data"},
                                              format="json")
    assert response.status_code == 200, response.json()
    release = Release.objects.get(pk=release_id)
    assert (release.status, release.failure_reason) == ("cancelled", "cancelled by ci: wrong data")
    assert {s.status for s in release.stages.all()} == {"skipped"}
    again = token_client(users["ci"]).post(f"/api/v1/releases/{release_id}/cancel/", {"reason": "x"}, format="json")
    assert again.status_code == 409
    assert again.json()["detail"] == f"release #{release_id} is cancelled; it cannot cancel"


def test_an_approver_may_not_cancel(users, release_id):
    response = token_client(users["alice"]).post(f"/api/v1/releases/{release_id}/cancel/", {"reason": "x"},
                                                 format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "alice has no role that may cancel"
    assert Release.objects.get(pk=release_id).status == "pending"
