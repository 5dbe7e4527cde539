"""A rollback drill of one model's service: back to its warm release and forward again, with the times."""

from django.conf import settings
from django.db import models

from releases.models.deploy import Service
from releases.models.pipeline import Release


class RollbackDrill(models.Model):
    """One drill: how long the move back to the warm release took (call to 100 % of the model's traffic
    on it, as the proxy applied it) and the move forward again, or why it failed."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="drills")
    current = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="+",
                                help_text="the release that served when the drill began")
    previous = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="+",
                                 help_text="the warm release the drill rolled back to")
    started_at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_label = models.CharField(max_length=200)
    scheduled = models.BooleanField(default=False, help_text="started by the staging schedule")
    back_ms = models.FloatField(null=True, blank=True, help_text="call until 100 % on the previous release")
    forward_ms = models.FloatField(null=True, blank=True, help_text="from there until 100 % on the current again")
    ok = models.BooleanField()
    reason = models.TextField(blank=True, help_text="why it failed, and where the traffic is then")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["service", "-started_at"], name="drill_service_started")]

    def __str__(self) -> str:
        return f"drill of {self.service_id} at {self.started_at:%Y-%m-%d %H:%M:%S}: {'ok' if self.ok else 'failed'}"
