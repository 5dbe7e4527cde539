"""Celery tasks: keyword-only ids in, the work handed to plain functions."""

from celery import shared_task

from workers import runner


@shared_task(name="workers.tasks.run_stage", acks_late=True)
def run_stage(*, release_id: int, stage: str) -> None:
    runner.run_stage(release_id, stage)


@shared_task(name="workers.tasks.stop_instance", acks_late=True)
def stop_instance(*, deployment_id: int) -> None:
    from releases.models import Deployment
    from workers.deploying import stop

    deployment = Deployment.objects.select_related("environment").get(pk=deployment_id)
    if deployment.role == Deployment.Role.STOPPED:
        stop(deployment)


@shared_task(name="workers.tasks.sweep")
def sweep() -> dict[str, int]:
    from releases.sweeper import sweep as run_sweep

    return run_sweep()
