"""The Celery application. Workers get ids only, as JSON; the database holds the truth."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slipway.settings")

app = Celery("slipway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("cpu"), Queue("gpu"), Queue("deploy")]
app.autodiscover_tasks(["workers"])
