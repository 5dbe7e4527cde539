"""Celery task: collect from every running model server (beat runs it; see slipway/celery.py)."""

from celery import shared_task


@shared_task(name="monitoring.tasks.collect")
def collect() -> dict[str, int]:
    from monitoring.collect import collect_all
    from monitoring.shadowing import collect_shadows

    return collect_all() | {"shadow_runs": collect_shadows()}
