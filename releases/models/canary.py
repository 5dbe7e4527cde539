"""A canary under analysis: its window, the counters it started from, what it has seen, and its verdict.

Short scheduled checks (releases/canaries.py) sample it; no task waits through the window."""

from django.db import models

from releases.models.deploy import Deployment
from releases.models.pipeline import StageRun


class Canary(models.Model):
    class Status(models.TextChoices):
        WATCHING = "watching"
        WAITING = "waiting", "inconclusive, waiting for a person"
        PROMOTED = "promoted"
        FAILED = "failed"
        ABORTED = "aborted"

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="canary_run")
    stable = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(StageRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WATCHING, db_index=True)
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(help_text="when the window ends (moved on by each extension)")
    extensions = models.PositiveSmallIntegerField(default=0)
    first = models.JSONField(default=dict, help_text="stable and canary counters when the window opened")
    last = models.JSONField(default=dict, help_text="stable and canary counters at the latest check")
    checked_at = models.DateTimeField(null=True, blank=True)
    stable_requests = models.PositiveIntegerField(default=0)
    canary_requests = models.PositiveIntegerField(default=0)
    requests_needed = models.PositiveIntegerField()
    verdict = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"canary of {self.deployment.release_id} ({self.status})"

    @property
    def open(self) -> bool:
        return self.status in (self.Status.WATCHING, self.Status.WAITING)
