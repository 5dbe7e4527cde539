"""The start of a shadow's server is owed until it runs: the sweep sends a start the broker refused or lost
again, one worker at a time launches it (a redelivered or resent start launches no second server), and a
run whose server never starts ends after SLIPWAY_SHADOW_START_MAX_ATTEMPTS sends, with that reason."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import ShadowRun
from releases.actors import Actor
from releases.routing import instance_record
from releases.sweeper import over_time_limit
from shipping.targets import Instance
from workers import shadowing, tasks

pytestmark = pytest.mark.django_db
SEND_LAUNCH = shadowing.send_launch  # tests/conftest.py keeps it from the broker; here the broker is faked


def _instance(release_id: int, port: int) -> Instance:
    return Instance(kind="local", handle=str(port), release_id=str(release_id), environment="production",
                    host="127.0.0.1", port=port)


@pytest.fixture
def servers(serving, monkeypatch) -> list[Instance]:
    """The shadow servers launched (none runs: the target's launch and the active server's copying are
    faked). `servers.during_launch`, when set, runs inside the launch, as another worker would meanwhile."""
    active = serving["active"]
    active.instance = instance_record(_instance(active.release_id, 10))
    active.save()
    launched = Launched()

    def launch(release, environment) -> Instance:
        instance = _instance(release.pk, 20 + len(launched))
        launched.append(instance)
        if launched.during_launch is not None:
            launched.during_launch()
        return instance

    monkeypatch.setattr("workers.shadowing.launch", launch)
    monkeypatch.setattr("shipping.shadow.start", lambda *args, **kwargs: {})
    return launched


class Launched(list):
    during_launch = None


@pytest.fixture
def broker(monkeypatch) -> list[int]:
    """The runs whose start reached the broker (the real send_launch, the broker faked); while `broker.down`
    the broker refuses."""
    sent = Sent()

    def send_task(name, kwargs, queue):
        if sent.down:
            raise ConnectionError("broker down")
        assert (name, queue) == ("workers.tasks.start_shadow", "deploy")
        sent.append(kwargs["run_id"])

    monkeypatch.setattr("workers.shadowing.send_launch", SEND_LAUNCH)
    monkeypatch.setattr("workers.shadowing.current_app.send_task", send_task)
    return sent


class Sent(list):
    down = False


def _place(serving, django_capture_on_commit_callbacks) -> ShadowRun:
    with django_capture_on_commit_callbacks(execute=True):
        return shadowing.place_and_send("production", "digits", serving["ids"][0], 0.5, Actor.system("test"))


def _age(run: ShadowRun, **fields: object) -> None:
    """Make the run's last start send older than the resend age (as if minutes had passed)."""
    ShadowRun.objects.filter(pk=run.pk).update(start_sent_at=timezone.now() - timedelta(minutes=5), **fields)


def test_a_start_the_broker_refused_is_sent_again_by_the_sweep_and_the_run_starts(
        serving, servers, broker, django_capture_on_commit_callbacks, caplog) -> None:
    broker.down = True
    run = _place(serving, django_capture_on_commit_callbacks)
    assert f"could not send the start of shadow run {run.pk}" in caplog.text
    broker.down = False
    assert tasks.sweep()["starts_resent"] == 0  # sent just now: a worker may be starting it
    _age(run)
    swept = tasks.sweep()
    assert (swept["starts_resent"], swept["starts_ended"], broker) == (1, 0, [run.pk])
    assert tasks.sweep()["starts_resent"] == 0  # start_sent_at was renewed
    started = shadowing.launch_run(run.pk)  # what the deploy worker does with the message
    assert started is not None and started.instance == instance_record(servers[0])
    assert (started.stopped_at, started.start_attempts) == (None, 2)
    _age(run)
    assert tasks.sweep()["starts_resent"] == 0  # started: nothing is owed
    assert broker == [run.pk]


def test_two_workers_with_the_same_start_launch_one_server(serving, servers, broker,
                                                           django_capture_on_commit_callbacks) -> None:
    run = _place(serving, django_capture_on_commit_callbacks)
    others: list[ShadowRun | None] = []
    # A second worker gets the same start (a redelivered message, or the sweep's resend) while the first
    # one launches its server.
    servers.during_launch = lambda: others.append(shadowing.launch_run(run.pk))
    first = shadowing.launch_run(run.pk)
    servers.during_launch = None
    assert others == [None]
    assert shadowing.launch_run(run.pk) is None  # and one after it started
    assert len(servers) == 1 and first is not None and first.instance == instance_record(servers[0])
    _age(run)
    assert tasks.sweep()["starts_resent"] == 0


def test_a_start_taken_by_a_worker_that_died_is_sent_again_once_its_time_limit_passed(
        serving, servers, broker, django_capture_on_commit_callbacks) -> None:
    run = _place(serving, django_capture_on_commit_callbacks)
    ShadowRun.objects.filter(pk=run.pk).update(launching_at=timezone.now())  # a worker took it, then died
    _age(run)
    assert tasks.sweep()["starts_resent"] == 0  # it may still be launching
    assert shadowing.launch_run(run.pk) is None
    _age(run, launching_at=timezone.now() - over_time_limit() - timedelta(seconds=1))
    assert tasks.sweep()["starts_resent"] == 1
    assert shadowing.launch_run(run.pk) is not None and len(servers) == 1


def test_a_run_whose_server_never_starts_ends_after_the_last_attempt_with_the_reason(
        serving, servers, broker, settings, django_capture_on_commit_callbacks, client, users) -> None:
    settings.SLIPWAY_SHADOW_START_MAX_ATTEMPTS = 3
    run = _place(serving, django_capture_on_commit_callbacks)  # attempt 1; no deploy worker ever takes it
    for attempt in (2, 3):
        _age(run)
        assert (tasks.sweep()["starts_resent"], ShadowRun.objects.get(pk=run.pk).start_attempts) == (1, attempt)
    _age(run)
    swept = tasks.sweep()
    assert (swept["starts_resent"], swept["starts_ended"]) == (0, 1)
    run.refresh_from_db()
    reason = (f"not started after 3 attempts: no deploy worker started its server within "
              f"{settings.SLIPWAY_STAGE_RESEND_AFTER_S:g} s of a send (are a deploy worker and the broker running?)")
    assert (run.reason, run.stopped_at is not None, broker) == (reason, True, [run.pk, run.pk, run.pk])
    assert shadowing.launch_run(run.pk) is None and servers == []  # a late message starts nothing
    client.force_login(users["victor"])
    panel = client.get(f"/monitoring/releases/{run.shadow_id}/shadow/").content.decode()
    assert reason in panel


def test_a_stopped_run_is_never_sent_again(serving, servers, broker, django_capture_on_commit_callbacks) -> None:
    run = _place(serving, django_capture_on_commit_callbacks)
    shadowing.stop(run, Actor.system("test"))
    _age(run)
    assert (tasks.sweep()["starts_resent"], tasks.sweep()["starts_ended"], broker) == (0, 0, [run.pk])
    assert shadowing.launch_run(run.pk) is None and servers == []
