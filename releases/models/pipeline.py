"""A release is one pipeline run of a version: its stages, metrics, gate checks and approvals."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from releases.models.catalog import Artifact, ModelVersion
from releases.redact import without_paths


class ReleaseStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SHIPPING = "shipping"
    RELEASED = "released"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUS_LABELS: dict[str, str] = {value: str(label) for value, label in ReleaseStatus.choices}
CHOSEN = "chosen — "  # how the compress stage words the chosen candidate's reason


class Release(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="releases")
    status = models.CharField(max_length=20, choices=ReleaseStatus.choices, default=ReleaseStatus.PENDING,
                              db_index=True)
    chosen_artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    choice_reasons = models.JSONField(default=dict, blank=True,
                                      help_text="artifact id → why it was or was not chosen")
    failure_reason = models.TextField(blank=True)
    image = models.CharField(max_length=200, blank=True, help_text="the container image's tag")
    image_digest = models.CharField(max_length=100, blank=True, help_text="its content digest (sha256:…)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"release #{self.pk} of {self.version}"

    @property
    def model(self):  # noqa: ANN201 - convenience for templates
        return self.version.model

    @property
    def status_label(self) -> str:
        """get_status_display's answer, read off a dict made once (that method makes one a call: the pages
        list dozens of releases)."""
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def failed(self) -> bool:
        """A failed release ships nothing: no artifact of it reads "chosen" (page, API)."""
        return self.status == ReleaseStatus.FAILED

    @property
    def shipped_artifact_id(self) -> int | None:
        return None if self.failed else self.chosen_artifact_id

    def choice_reason(self, artifact_id: int) -> str:
        """Why this artifact was or was not chosen; a failed release's choice reads as selected, not chosen."""
        reason = self.choice_reasons.get(str(artifact_id), "") or ""
        if self.failed and reason.startswith(CHOSEN):
            return "selected before the release failed: " + reason.removeprefix(CHOSEN)
        return reason

    @property
    def shown_choice_reasons(self) -> dict[str, str]:
        """Every artifact's reason as people read it (see choice_reason)."""
        return {key: self.choice_reason(int(key)) for key in self.choice_reasons}


class StageStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class StageRun(models.Model):
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=40)
    position = models.PositiveSmallIntegerField()
    queue = models.CharField(max_length=20, default="cpu")
    status = models.CharField(max_length=20, choices=StageStatus.choices, default=StageStatus.PENDING)
    attempt = models.PositiveSmallIntegerField(default=0)
    worker_host = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=20, blank=True, help_text="cpu or cuda:N")
    progress = models.FloatField(default=0, help_text="percent")
    step = models.CharField(max_length=200, blank=True, help_text="what it is doing now")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The run that holds the stage: set when a worker starts it, renewed by that worker while it runs.
    claim = models.CharField(max_length=32, blank=True, help_text="token of the run that holds the stage")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life of that run")

    class Meta:
        ordering = ["release", "position"]
        constraints = [models.UniqueConstraint(fields=["release", "name"], name="unique_stage_per_release")]

    def __str__(self) -> str:
        return f"{self.name} of release #{self.release_id}"

    def add_log(self, line: str) -> None:
        """Add a line to the log (not saved), which people read: stamped, server paths cut (releases.redact)."""
        self.log += f"{timezone.now():%H:%M:%S} {without_paths(line)}\n"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Metric(models.Model):
    """A measured figure of a release (its chosen model) or of one artifact (a candidate)."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="metrics")
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="metrics")
    name = models.CharField(max_length=60)
    value = models.FloatField()
    unit = models.CharField(max_length=20, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["release", "name"])]

    def __str__(self) -> str:
        return f"{self.name}={self.value:g}{self.unit}"


class GateCheck(models.Model):
    """One automatic check of the gate: a measured value against its threshold."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="gate_checks")
    gate = models.CharField(max_length=20, default="release", help_text="release or production")
    name = models.CharField(max_length=60)
    comparator = models.CharField(max_length=2, choices=[(">=", ">="), ("<=", "<=")])
    threshold = models.FloatField()
    measured = models.FloatField(null=True, blank=True)
    passed = models.BooleanField()
    detail = models.CharField(max_length=300, blank=True)
    checked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.detail or self.name


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="approvals")
    gate = models.CharField(max_length=20, default="release", help_text="release or production")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["release", "gate", "user"], name="one_vote_per_user")]

    def __str__(self) -> str:
        return f"{self.user} {self.decision}s release #{self.release_id}"
