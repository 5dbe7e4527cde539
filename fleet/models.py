"""One row per Celery worker (its node name, e.g. gpu@host-3): what it has and what it runs now."""

from django.db import models


class WorkerNode(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="Celery node name, queue@host")
    hostname = models.CharField(max_length=200)
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=1)
    cpu_count = models.PositiveIntegerField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    cuda_devices = models.JSONField(default=list, blank=True, help_text="[{index, name, memory_bytes}]")
    version = models.CharField(max_length=40, blank=True)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    running = models.JSONField(default=list, blank=True, help_text="[{task_id, release_id, stage, since}]")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
