"""Celery tasks: keyword-only ids in, the work handed to plain functions."""

from celery import shared_task, signals
from django.db import close_old_connections

from workers import runner


@signals.task_prerun.connect
@signals.task_postrun.connect
def _reuse_database_connection(**_: object) -> None:
    """Around each task, as Django does around each request: keep the connection unless it is broken or
    older than CONN_MAX_AGE (CELERY_DB_REUSE_MAX stops Celery from closing it every time)."""
    close_old_connections()


@shared_task(name="workers.tasks.run_stage", acks_late=True)
def run_stage(*, release_id: int, stage: str) -> None:
    runner.run_stage(release_id, stage)


@shared_task(name="workers.tasks.stop_instance", acks_late=True)
def stop_instance(*, deployment_id: int) -> bool:
    from workers.deploying import stop

    return stop(deployment_id)


@shared_task(name="workers.tasks.start_shadow", acks_late=True)
def start_shadow(*, run_id: int) -> None:
    from workers.shadowing import launch_run

    launch_run(run_id)


@shared_task(name="workers.tasks.sweep")
def sweep() -> dict[str, int]:
    """Lost stages and stops (releases/sweeper.py), and lost starts of shadow servers (above releases' layer)."""
    from django.utils import timezone

    from releases.sweeper import resend_before
    from releases.sweeper import sweep as run_sweep
    from workers.shadowing import resend_starts

    return run_sweep() | resend_starts(resend_before(timezone.now()))


@shared_task(name="workers.tasks.reap_orphans")
def reap_orphans() -> dict[str, int]:
    """Stop the model servers no record references, older than any launch (workers/orphans.py; beat sends it
    to the deploy queue, whose workers run the servers, every SLIPWAY_SWEEP_EVERY_S)."""
    from workers.orphans import reap

    return reap()


@shared_task(name="workers.tasks.sweep_uploads")
def sweep_uploads() -> int:
    from releases.uploads import sweep_staging

    return sweep_staging()


@shared_task(name="workers.tasks.keep_serving")
def keep_serving() -> list[str]:
    """Start HAProxy and the local model servers in service again when they died (beat, every 15 s)."""
    from releases.routing import ensure_proxy
    from workers.deploying import revive_local_servers

    revived = revive_local_servers()
    ensure_proxy()
    return revived
@shared_task(name="workers.tasks.check_canaries")
def check_canaries() -> dict[str, int]:
    """Beat sends this every SLIPWAY_CANARY_CHECK_EVERY_S: one short pass over the running canaries."""
    from releases.canaries import check_all

    return check_all()


@shared_task(name="workers.tasks.drill_staging")
def drill_staging() -> dict[str, int]:
    """Beat sends this every SLIPWAY_DRILL_STAGING_EVERY_S (when set): a rollback drill of each staging model."""
    from releases.drills import drill_staging as run_drills

    return run_drills()
