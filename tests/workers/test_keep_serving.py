"""Beat's keep_serving: a local model server in service that died is started again on its port, and a
HAProxy that died is started again with the traffic the records say."""

import os
import signal
import time

import pytest
from django.conf import settings

from releases.models import Deployment
from shipping.ports import port_is_free
from tests.conftest import served_by, to_staging, token_client
from workers.tasks import keep_serving

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
STAGING = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}"


def _kill(pid: int, port: int) -> None:
    """SIGKILL, as a crash; it is gone once its port is free (a zombie holds no socket)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not port_is_free(port):
        assert time.monotonic() < deadline, f"pid {pid} still holds port {port}"
        time.sleep(0.05)


def test_a_dead_model_server_and_a_dead_haproxy_are_started_again(celery_worker, users):
    release_id = to_staging(token_client(users["ci"]), token_client(users["alice"]), "1")
    deployment = Deployment.objects.get(service__environment__name="staging", release_id=release_id)
    old = deployment.instance
    assert served_by(STAGING) == str(release_id)
    assert keep_serving() == []  # all is well: nothing to do

    _kill(int(old["handle"]), old["port"])
    _kill(int((settings.SLIPWAY_PROXY_DIR / "haproxy.pid").read_text().split()[0]), settings.SLIPWAY_FIRST_PROXY_PORT)

    assert keep_serving() == [f"release {release_id} in staging on port {old['port']}"]
    deployment.refresh_from_db()
    assert deployment.instance["port"] == old["port"] and deployment.instance["handle"] != old["handle"]
    assert (settings.SLIPWAY_SERVING_DIR / "pids" / f"{deployment.instance['handle']}.json").exists()
    assert not (settings.SLIPWAY_SERVING_DIR / "pids" / f"{old['handle']}.json").exists()
    assert served_by(STAGING) == str(release_id)
