"""The Celery application. Workers get ids only, as JSON; the database holds the truth."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slipway.settings")

QUEUES = ("cpu", "gpu", "deploy")

app = Celery("slipway")
app.config_from_object("django.conf:settings", namespace="CELERY")
# One exchange per queue, so a task sent to "gpu" is only ever taken by a worker consuming "gpu".
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
app.autodiscover_tasks(["workers", "webhooks", "monitoring"])


def load_sending() -> None:
    """Load what a process's first task message needs (the result backend's class, found by a scan of
    every installed package's entry points, and the broker's transport and producer pool), connecting to
    nothing. A web process does it as it starts (slipway/wsgi.py): else its first send, such as the stop
    that a rollback queues, pays it inside a request (measured here: 50 ms with the in-memory broker,
    300 ms with Redis)."""
    app.backend  # noqa: B018 - the property loads and keeps it
    app.producer_pool  # noqa: B018
