"""Celery tasks (beat runs them; see slipway/settings.py): collect from every running model server, and
forget monitoring records past their retention."""

from celery import shared_task


@shared_task(name="monitoring.tasks.collect")
def collect() -> dict[str, int]:
    from monitoring.collect import collect_all
    from monitoring.shadowing import collect_shadows

    return collect_all() | {"shadow_runs": collect_shadows()}


@shared_task(name="monitoring.tasks.forget_old")
def forget_old() -> dict[str, int]:
    from monitoring.retention import forget_old as forget

    return forget()
