"""Celery tasks: keyword-only ids in, the work handed to plain functions."""

from celery import shared_task

from workers import runner


@shared_task(name="workers.tasks.run_stage", acks_late=True)
def run_stage(*, release_id: int, stage: str) -> None:
    runner.run_stage(release_id, stage)
