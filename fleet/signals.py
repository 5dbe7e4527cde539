"""Celery worker signals → fleet.announce. Connected in every process; only workers send them."""

from celery import signals

from fleet import announce, inventory

_heartbeat: list[announce.Heartbeat] = []


@signals.worker_ready.connect
def _ready(sender, **kwargs) -> None:  # noqa: ANN001 - celery's Consumer
    name = sender.hostname
    queues = [queue.name for queue in sender.task_consumer.queues]
    announce.announce(name, queues, sender.controller.concurrency, inventory.cuda_devices())
    heartbeat = announce.Heartbeat(name)
    heartbeat.start()
    _heartbeat.append(heartbeat)


@signals.task_prerun.connect
def _task_started(sender=None, task_id: str = "", task=None, kwargs=None, **extra) -> None:  # noqa: ANN001
    announce.task_started(task.request.hostname, task_id, kwargs or {})


@signals.task_postrun.connect
def _task_finished(sender=None, task_id: str = "", task=None, **extra) -> None:  # noqa: ANN001
    announce.task_finished(task.request.hostname, task_id)


@signals.worker_shutdown.connect
def _shutdown(sender, **kwargs) -> None:  # noqa: ANN001 - celery's WorkController
    for heartbeat in _heartbeat:
        heartbeat.halt.set()
    announce.stopped(sender.hostname)
