"""Servers that leave service are stopped, and a stop the broker lost is sent again by the sweeper until a
worker confirms the server gone — real worker process, real HAProxy, model servers as local processes."""

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from releases import routing
from releases.actors import Actor
from releases.deploys import put_in_service
from releases.models import Deployment, Release, ReleasePolicy
from releases.sweeper import sweep
from tests.conftest import served_by, to_staging, token_client
from tests.workerproc import session_worker_off_the_queues
from workers.deploying import launch

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
STAGING = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT}"
PRODUCTION = f"http://127.0.0.1:{settings.SLIPWAY_FIRST_PROXY_PORT + 1}"


def in_staging(release_id: int) -> Deployment:
    return Deployment.objects.select_related("service__environment").get(
        service__environment__name="staging", release_id=release_id)


def alive(deployment: Deployment) -> bool:
    return routing.target_for(deployment.environment).is_alive(routing.instance_of(deployment))


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f} s"
        time.sleep(0.1)


def test_rolled_back_and_retired_servers_stop_and_a_lost_stop_is_sent_again(celery_worker, users):
    ci, alice = token_client(users["ci"]), token_client(users["alice"])
    first, second = to_staging(ci, alice, "1"), to_staging(ci, alice, "2")
    assert (in_staging(first).role, in_staging(second).role, served_by(STAGING)) == ("warm", "active", str(second))

    # Rolled back while no worker takes the deploy queue, and the broker loses the stop (a restart
    # that keeps nothing): the server runs on, its stop owed in the database.
    with session_worker_off_the_queues(celery_worker):
        oncall = token_client(users["ci"], ["rollback", "releases:read"])
        response = oncall.post("/api/v1/environments/staging/models/digits/rollback/", {"reason": "bad answers"},
                               format="json")
        assert response.status_code == 200, response.json()
        assert redis.Redis.from_url(settings.REDIS_URL).delete("deploy") == 1
    rolled_back = in_staging(second)
    assert (rolled_back.role, rolled_back.stopped_at, alive(rolled_back)) == ("stopped", None, True)
    assert served_by(STAGING) == str(first)
    assert sweep()["stops_resent"] == 0  # sent moments ago: a worker may be on it
    Deployment.objects.filter(pk=rolled_back.pk).update(stop_sent_at=timezone.now() - timedelta(minutes=5))
    assert sweep()["stops_resent"] == 1
    wait_until("confirmed stopped", lambda: in_staging(second).stopped_at is not None)
    assert not alive(rolled_back)
    assert sweep()["stops_resent"] == 0

    # Deployed again with no warm release kept: the one that served is retired and its server stops.
    ReleasePolicy.objects.filter(model__name="digits").update(keep_warm=0)
    instance = launch(Release.objects.get(pk=second), rolled_back.environment)
    put_in_service(second, "staging", instance, canary_percent=None, actor=Actor.system("test"))
    again = in_staging(second)
    assert (again.role, again.stop_sent_at, again.stopped_at, alive(again)) == ("active", None, None, True)
    assert served_by(STAGING) == str(second)
    retired = in_staging(first)
    assert (retired.role, retired.traffic_percent) == ("stopped", 0) and retired.stop_sent_at is not None
    wait_until("confirmed stopped", lambda: in_staging(first).stopped_at is not None)
    assert not alive(retired)
    assert served_by(STAGING) == str(second)
