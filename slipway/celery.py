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
