"""Outages under a running pipeline: Redis stopped (builds are still accepted; every release reaches its
gate once it is back) and every PostgreSQL connection cut, as a database restart does (the worker and
the web reconnect and the release goes on)."""

import time

import pytest
from django.db import close_old_connections

from releases.models import StageRun
from tests.conftest import token_client
from tests.reliability.drills import Sweeper, figures, terminate_backends, wait_for_all, wait_for_stage
from tests.reliability.test_worker_kill import post_build
from tests.workerproc import worker_database_url

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.real_broker]
GATE = {"awaiting_approval"}


def test_builds_posted_while_redis_is_down_all_reach_their_gate(users, own_broker, drill_worker):
    drill_worker("drill-o")
    first = post_build(users, "1")
    wait_for_stage(first, "compress", "running")
    own_broker.stop()
    second = post_build(users, "2")  # answered while Redis is down (how fast: bench/faults.py)
    assert list(StageRun.objects.filter(release_id=second).values_list("name", "status"))[:2] == [
        ("validate", "queued"), ("convert", "pending")]
    time.sleep(3)
    own_broker.start()
    with Sweeper() as sweeper:
        reached = wait_for_all([first, second], GATE, timeout=150)
    assert reached == {first: "awaiting_approval", second: "awaiting_approval"}
    # What the outage lost: the second build's first stage, and the first build's next stage when its
    # stage ended while Redis was down.
    assert sweeper.totals["resent"] >= 1
    assert sweeper.totals["failed"] == 0
    assert figures([first, second], reached, GATE) == {"releases_lost": 0, "stages_stuck": 0, "double_deploys": 0}


def test_cut_database_connections_mid_pipeline_are_made_again(users, drill_worker):
    drill_worker("drill-p")
    release_id = post_build(users)
    wait_for_stage(release_id, "compress", "running")
    assert terminate_backends(worker_database_url()) >= 2  # the worker's, the test's own
    close_old_connections()  # what the web does before each request: the dead connection is replaced
    assert token_client(users["victor"]).get(f"/api/v1/releases/{release_id}/").status_code == 200
    with Sweeper():
        reached = wait_for_all([release_id], GATE, timeout=120)
    assert reached == {release_id: "awaiting_approval"}
    compress = StageRun.objects.get(release_id=release_id, name="compress")
    assert (compress.status, compress.attempt) == ("succeeded", 2)
    assert compress.release.audit_events.filter(
        action="stage.queue", reason="the database connection broke (OperationalError); attempt 2 follows").exists()
    assert figures([release_id], reached, GATE) == {"releases_lost": 0, "stages_stuck": 0, "double_deploys": 0}
