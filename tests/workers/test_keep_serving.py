"""Beat's keep_serving: a local model server in service that died is started again on its port, and a
HAProxy that died is started again with the traffic the records say."""

import os
import signal
import time

import numpy as np
import pytest
import requests
from django.conf import settings

from releases.models import Deployment
from serving import oip
from shipping.ports import port_is_free
from tests.conftest import build_form, token_client, wait_for_status
from tests.factories import digits_model
from workers.tasks import keep_serving

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
STAGING = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}"


def _served_by() -> str:
    body = oip.request_document({"pixels": digits_model().eval_inputs[:1].astype(np.float32)})
    answer = requests.post(STAGING + oip.infer_path("digits"), json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Release-Id"]


def _kill(pid: int, port: int) -> None:
    """SIGKILL, as a crash; it is gone once its port is free (a zombie holds no socket)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not port_is_free(port):
        assert time.monotonic() < deadline, f"pid {pid} still holds port {port}"
        time.sleep(0.05)


def test_a_dead_model_server_and_a_dead_haproxy_are_started_again(celery_worker, users):
    ci, alice = token_client(users["ci"]), token_client(users["alice"])
    release_id = ci.post("/api/v1/builds/", build_form(version="1"), format="multipart").json()["release"]["id"]
    wait_for_status(release_id, "awaiting_approval")
    assert alice.post(f"/api/v1/releases/{release_id}/approve/", {}, format="json").status_code == 201
    assert wait_for_status(release_id, "awaiting_approval", "failed", timeout=90).status == "awaiting_approval"
    deployment = Deployment.objects.get(service__environment__name="staging", release_id=release_id)
    old = deployment.instance
    assert _served_by() == str(release_id)
    assert keep_serving() == []  # all is well: nothing to do

    _kill(int(old["handle"]), old["port"])
    _kill(int((settings.SLIPWAY_PROXY_DIR / "haproxy.pid").read_text().split()[0]), settings.SLIPWAY_FIRST_PROXY_PORT)

    assert keep_serving() == [f"release {release_id} in staging on port {old['port']}"]
    deployment.refresh_from_db()
    assert deployment.instance["port"] == old["port"] and deployment.instance["handle"] != old["handle"]
    assert (settings.SLIPWAY_SERVING_DIR / "pids" / f"{deployment.instance['handle']}.json").exists()
    assert not (settings.SLIPWAY_SERVING_DIR / "pids" / f"{old['handle']}.json").exists()
    assert _served_by() == str(release_id)
