"""What Slipway keeps of the serving runtime's monitoring path, and what alerts did."""

from django.db import models

from releases.models import Deployment, Environment, Model, Release, Service


class MonitoringPolicy(models.Model):
    """What a firing alert about a model does: notify people, or roll its environment back."""

    class OnAlert(models.TextChoices):
        NOTIFY = "notify"
        ROLLBACK = "rollback"

    model = models.OneToOneField(Model, on_delete=models.CASCADE, related_name="monitoring_policy")
    on_alert = models.CharField(max_length=10, choices=OnAlert.choices, default=OnAlert.NOTIFY)
    cooldown_seconds = models.PositiveIntegerField(
        default=1800, help_text="after an alert rolled an environment back, no alert rolls it back again for this long")
    shadow_gate = models.BooleanField(
        default=False, help_text="a release's canary in production waits for the verdict of its shadow run there "
                                 "(and is refused when it failed or was stopped before a verdict)")

    class Meta:
        verbose_name_plural = "monitoring policies"

    def __str__(self) -> str:
        return f"{self.model}: {self.on_alert}, cool-down {self.cooldown_seconds} s"


class Prediction(models.Model):
    """One answered row, collected from the serving runtime's log: argmax class or value."""

    prediction_id = models.CharField(max_length=64, unique=True)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["release", "at"]), models.Index(fields=["environment", "at"])]

    def __str__(self) -> str:
        return f"{self.prediction_id} #{self.release_id}: {self.value:g}"


class Label(models.Model):
    """The ground truth of one prediction, posted later; at most one per prediction."""

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="label")
    value = models.FloatField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.prediction_id}: {self.value:g}"


class CollectState(models.Model):
    """Where collection from one deployment's server stands: its last cumulative figures, and the
    input counts gathered since the last drift point."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="+")
    boot = models.CharField(max_length=64, blank=True, help_text="the server run the figures belong to")
    after = models.BigIntegerField(default=0, help_text="last prediction sequence number collected")
    totals = models.JSONField(default=dict, help_text="last cumulative rows, abnormal rows, crashes")
    counts = models.JSONField(default=list, help_text="last cumulative input counts per feature and bin")
    pending = models.JSONField(default=list, help_text="input counts since the last drift point")
    pending_rows = models.PositiveIntegerField(default=0)
    serving = models.JSONField(default=dict, blank=True,
                               help_text="last /metrics reading: the server run (boot), when, the counters")

    def __str__(self) -> str:
        return f"collection from deployment {self.deployment_id}"


class WatchSample(models.Model):
    """One collection interval of one release in one environment: rows, abnormal outputs, crashes,
    and input drift when enough rows arrived to measure it."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    rows = models.PositiveIntegerField(default=0)
    nan = models.PositiveIntegerField(default=0)
    inf = models.PositiveIntegerField(default=0)
    out_of_range = models.PositiveIntegerField(default=0)
    crashes = models.PositiveIntegerField(default=0)
    drift_psi = models.FloatField(null=True, blank=True, help_text="largest population stability index")
    drift_ks = models.FloatField(null=True, blank=True, help_text="largest Kolmogorov-Smirnov distance")
    drift_features = models.JSONField(default=dict, blank=True, help_text="feature → PSI")

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["environment", "at"]), models.Index(fields=["release", "at"])]

    def __str__(self) -> str:
        return f"#{self.release_id} in {self.environment_id} at {self.at:%H:%M:%S}: {self.rows} rows"


class AlertAction(models.Model):
    """What Slipway did about one firing alert (the cool-down reads the rollbacks)."""

    class Action(models.TextChoices):
        ROLLED_BACK = "rolled_back"
        NOTIFIED = "notified"
        IGNORED = "ignored"

    environment = models.ForeignKey(Environment, null=True, on_delete=models.CASCADE, related_name="+")
    release = models.ForeignKey(Release, null=True, on_delete=models.SET_NULL, related_name="+")
    alertname = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["environment", "action", "at"])]

    def __str__(self) -> str:
        return f"{self.alertname} → {self.action}"


class ShadowRun(models.Model):
    """A release running in shadow beside its service's active release (one model in one environment): a
    share of the active release's requests copied to it, the answers paired by the active server
    (serving/shadow.py), the paired figures collected with the monitoring beat and judged against the
    run's policy. At most one runs per service at a time; another model's service has its own."""

    class Verdict(models.TextChoices):
        WAIT = "wait"
        PASS = "pass"  # noqa: S105 (a verdict, not a password)
        FAIL = "fail"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="shadow_runs")
    active = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="shadowed_runs")
    shadow = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="shadow_runs")
    share = models.FloatField(help_text="share of the active release's requests copied, 0..1")
    instance = models.JSONField(default=dict, help_text="the shadow's own server (not in the proxy); empty "
                                "while it is being started")
    minutes = models.FloatField(default=10.0, help_text="shadow minutes before a verdict")
    min_pairs = models.PositiveIntegerField(default=200)
    min_agreement = models.FloatField(default=0.98, help_text="same-label rate or mean cosine")
    max_abs_difference = models.FloatField(default=0.05, help_text="regression")
    max_p95_increase = models.FloatField(default=0.2, help_text="when the bootstrap interval says it is real")
    figures = models.JSONField(default=dict, blank=True, help_text="the active server's last /v1/shadow report")
    verdict = models.CharField(max_length=4, choices=Verdict.choices, default=Verdict.WAIT)
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    start_sent_at = models.DateTimeField(null=True, blank=True, help_text="when the start of its server was last "
                                         "sent to a deploy worker (the sweeper sends a lost one again)")
    start_attempts = models.PositiveSmallIntegerField(default=0, help_text="starts of its server sent so far")
    launching_at = models.DateTimeField(null=True, blank=True, help_text="when a worker took the start of its "
                                        "server: one launches it at a time")

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["service"], condition=models.Q(stopped_at=None),
                                               name="one_running_shadow_per_service")]

    def __str__(self) -> str:
        return f"#{self.shadow_id} in shadow of #{self.active_id} in {self.environment} ({self.verdict})"

    @property
    def environment(self) -> Environment:
        return self.service.environment

    @property
    def starting(self) -> bool:
        """Placed, its server not started yet (workers/shadowing.py launches it)."""
        return not self.instance and self.stopped_at is None
