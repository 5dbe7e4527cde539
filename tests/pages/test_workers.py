"""/workers/ in a browser: every worker with what it has and runs, gone ones marked, refreshed live."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fleet.models import WorkerNode
from tests.browser import screenshot
from tests.pages import data as d

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_520_809_984}


def node(name: str, queues: list[str], seen_s_ago: float, running: list[dict] | None = None, **fields) -> WorkerNode:
    now = timezone.now()
    return WorkerNode.objects.create(name=name, hostname=name.partition("@")[2], queues=queues, concurrency=1,
                                     cpu_count=16, memory_bytes=128 * 1024**3, version="0.1.0", pid=4242,
                                     started_at=now - timedelta(hours=2),
                                     last_seen_at=now - timedelta(seconds=seen_s_ago), running=running or [],
                                     **fields)


def test_the_workers_page_lists_the_fleet_and_follows_it(users, open_as, settings):
    settings.SLIPWAY_WORKER_HEARTBEAT_S = 15
    release = d.make_release(d.make_version(d.make_model(), "1.0.1", users["ci"]))
    since = timezone.now().isoformat()
    node("gpu@box-2", ["gpu"], 3, cuda_devices=[H100],
         running=[{"task_id": "t1", "release_id": release.pk, "stage": "evaluate", "since": since}])
    cpu = node("cpu@box-1", ["cpu"], 5)
    node("deploy@box-1", ["deploy"], 300)
    page = open_as("victor")
    page.goto("/workers/")
    rows = page.locator("#workers tbody tr")
    assert [r.get_attribute("data-worker") for r in rows.all()] == ["gpu@box-2", "cpu@box-1", "deploy@box-1"]
    assert [r.get_attribute("data-state") for r in rows.all()] == ["busy", "idle", "gone"]
    gpu_row = rows.nth(0)
    assert gpu_row.locator("td[data-label='Runs now']").inner_text() == f"#{release.pk} evaluate"
    assert gpu_row.locator("td[data-label='GPUs']").inner_text() == "cuda:0 NVIDIA H100 80GB HBM3 (79.6\xa0GB)"
    assert rows.nth(1).locator("td[data-label='GPUs']").inner_text() == "none (CPU)"
    assert page.locator("nav[aria-label='Main'] a[aria-current='page']").inner_text() == "Workers"
    screenshot(page, "workers")
    # The cpu worker picks up a stage: the table shows it without a reload.
    WorkerNode.objects.filter(pk=cpu.pk).update(last_seen_at=timezone.now(), running=[
        {"task_id": "t2", "release_id": release.pk, "stage": "compress", "since": since}])
    page.locator("tr[data-worker='cpu@box-1'][data-state='busy']").wait_for(timeout=15_000)
    assert page.locator("tr[data-worker='cpu@box-1'] td[data-label='Runs now']").inner_text() == (
        f"#{release.pk} compress")
