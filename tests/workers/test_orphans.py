"""Beat's reap_orphans: a model server that no record references — its worker was killed between starting it
and recording it — is stopped once it is older than any launch, and its registration goes with it. The servers
that records hold (active, warm, a running shadow run's, a stopped deployment's still owed its stop, which the
sweeper's resend_stops sees to) and a young one that a launch in progress may be about to record are left
alone; a record confirmed stopped, or a shadow run that ended, holds its server no more. Real local model
servers, in a serving folder of the test's own."""

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from monitoring.models import ShadowRun
from releases.models import Deployment, Environment, Release, Service
from releases.routing import instance_record, target_for
from releases.sweeper import over_time_limit
from serving.integrity import file_sha256
from shipping.local_target import LocalTarget, registered
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec
from tests.pages.data import make_model, make_release, make_version
from tests.serving import conftest as serving_fixtures
from workers.tasks import reap_orphans

pytestmark = pytest.mark.django_db
linear_path = serving_fixtures.linear_path
ports = PortAllocator()
ROLES = ["active", "warm", "owed a stop", "shadow", "orphan"]


@pytest.fixture
def production(settings, tmp_path: Path) -> Environment:
    settings.SLIPWAY_SERVING_DIR = tmp_path / "serving"  # the servers of this test only
    return Environment.objects.get(name="production")


@pytest.fixture
def servers(production: Environment, linear_path: Path) -> Iterator[dict[str, Instance]]:
    """One running local server per role in ROLES, each of its own release of one model (stopped after)."""
    version = make_version(make_model(), "1", User.objects.create_user("ci"))
    releases = [make_release(version, status="released") for _ in ROLES]
    target = target_for(production)

    def launch(release: Release) -> Instance:
        spec = InstanceSpec(release_id=str(release.pk), environment="production", port=ports.allocate(),
                            model_name="linear", model_path=linear_path, sha256=file_sha256(linear_path), threads=1)
        return target.launch(spec, timeout=60)

    with ThreadPoolExecutor() as pool:
        launched = dict(zip(ROLES, pool.map(launch, releases), strict=True))
    yield launched
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda instance: target.stop(instance, timeout=10), launched.values()))


def _record(production: Environment, servers: dict[str, Instance]) -> None:
    """The records of every server but the orphan's."""
    release = {role: Release.objects.get(pk=int(instance.release_id)) for role, instance in servers.items()}
    service = Service.objects.create(environment=production, model=release["active"].version.model)

    def deploy(server: str, **fields: object) -> Deployment:
        return Deployment.objects.create(service=service, release=release[server], endpoint=servers[server].url,
                                         instance=instance_record(servers[server]), **fields)

    deploy("active", role="active", traffic_percent=100)
    deploy("warm", role="warm", traffic_percent=0)
    deploy("owed a stop", role="stopped", traffic_percent=0, stop_sent_at=timezone.now())
    ShadowRun.objects.create(service=service, active=release["active"], shadow=release["shadow"], share=0.5,
                             started_at=timezone.now(), instance=instance_record(servers["shadow"]))


def _started_long_ago(pid_dir: Path) -> None:
    """Date every registration back to just before the oldest a launch in progress could be."""
    then = time.time() - over_time_limit().total_seconds() - 5
    for path in pid_dir.glob("*.json"):
        os.utime(path, (then, then))


def test_an_unreferenced_server_older_than_any_launch_is_stopped_and_only_it(production, servers, caplog):
    _record(production, servers)
    target = target_for(production)
    assert isinstance(target, LocalTarget)
    alive = lambda: {role for role, instance in servers.items() if target.is_alive(instance)}  # noqa: E731

    assert reap_orphans() == {"orphans_stopped": 0}  # all young: the orphan's launch may still record it
    assert alive() == set(ROLES)

    _started_long_ago(target.pid_dir)
    with caplog.at_level(logging.WARNING, logger="workers.orphans"):
        assert reap_orphans() == {"orphans_stopped": 1}
    orphan = servers["orphan"]
    assert alive() == set(ROLES) - {"orphan"}
    assert sorted(i.handle for i in registered(target.pid_dir)) == sorted(
        servers[role].handle for role in ROLES if role != "orphan")
    assert [r.getMessage().split(", started ")[0] for r in caplog.records] == [
        f"stopping local model server {orphan.handle} of release {orphan.release_id} (production, port {orphan.port})"]
    assert reap_orphans() == {"orphans_stopped": 0}

    # A record confirmed stopped, or a shadow run that ended, holds its server no more.
    Deployment.objects.filter(role="stopped").update(stopped_at=timezone.now())
    ShadowRun.objects.update(stopped_at=timezone.now())
    assert reap_orphans() == {"orphans_stopped": 2}
    assert alive() == {"active", "warm"}


def test_beat_reaps_on_the_deploy_queue_where_the_servers_run(settings):
    from slipway.celery import app

    app.loader.import_default_modules()
    assert settings.CELERY_BEAT_SCHEDULE["orphans"] == {
        "task": "workers.tasks.reap_orphans", "schedule": 30.0, "options": {"queue": "deploy", "expires": 30.0}}
    assert "workers.tasks.reap_orphans" in app.tasks
