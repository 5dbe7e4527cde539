"""Environments, each model's service in each, which release serves a service at what share, and the
record of traffic moves."""

from django.conf import settings
from django.db import models

from releases.models.catalog import Model
from releases.models.pipeline import Release


class Environment(models.Model):
    name = models.CharField(max_length=40, unique=True)
    position = models.PositiveSmallIntegerField(default=0)
    target = models.CharField(max_length=20, default="local", help_text="local or docker")
    proxy_port = models.PositiveIntegerField(unique=True, help_text="the stable endpoint's port")
    requires_approval = models.BooleanField(
        default=False, help_text="a release needs at least one approval at the gate before it serves here")

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class Service(models.Model):
    """One model in one environment: its route (/v2/models/<model>/ on the environment's address), its
    deployments and its history. Services are independent: moving one's traffic never touches another."""

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="services")
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="services")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment__position", "model__name"]
        constraints = [models.UniqueConstraint(fields=["environment", "model"],
                                               name="one_service_per_model_and_environment")]

    def __str__(self) -> str:
        return f"{self.model.name} in {self.environment.name}"

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model.name}/"


class Deployment(models.Model):
    """One release running for one service. Exactly one is active per service. A stopped one's instance is
    gone once stopped_at is set; until then its stop is owed (releases/sweeper.py sends it again)."""

    class Role(models.TextChoices):
        ACTIVE = "active"
        CANARY = "canary"
        WARM = "warm"
        STOPPED = "stopped"

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="deployments")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    role = models.CharField(max_length=10, choices=Role.choices)
    traffic_percent = models.PositiveSmallIntegerField(default=0)
    image = models.CharField(max_length=200, blank=True, help_text="image digest, docker target")
    endpoint = models.CharField(max_length=200, blank=True, help_text="the instance's own address")
    instance = models.JSONField(default=dict, blank=True, help_text="what the target needs to find it")
    stop_sent_at = models.DateTimeField(null=True, blank=True,
                                        help_text="when the stop of its instance was last sent")
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="when a worker confirmed its instance gone")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["service"], condition=models.Q(role="active"),
                                    name="one_active_release_per_service"),
            models.UniqueConstraint(fields=["service"], condition=models.Q(role="canary"),
                                    name="one_canary_per_service"),
            models.UniqueConstraint(fields=["service", "release"], name="one_deployment_per_release_and_service"),
        ]

    def __str__(self) -> str:
        return f"{self.release} in {self.service.environment} ({self.role}, {self.traffic_percent}%)"

    @property
    def environment(self) -> Environment:
        return self.service.environment


class TrafficChange(models.Model):
    """Append-only: the traffic split of one service from this moment on."""

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="traffic_changes")
    at = models.DateTimeField(db_index=True)
    shares = models.JSONField(help_text="release id → percent")
    action = models.CharField(max_length=20, help_text="deploy, canary, promote, rollback")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.service} {self.action} at {self.at:%Y-%m-%d %H:%M:%S}: {self.shares}"


class ServingSample(models.Model):
    """Serving figures of one release of one service over one scrape interval."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="samples")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="serving_samples")
    at = models.DateTimeField()
    requests_per_s = models.FloatField()
    error_rate = models.FloatField(help_text="errors / requests over the interval, 0..1")
    latency_p95_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["service", "at"], name="servingsample_service_at")]

    def __str__(self) -> str:
        return f"{self.service_id} #{self.release_id} at {self.at:%H:%M:%S}: {self.requests_per_s:.1f} req/s"
