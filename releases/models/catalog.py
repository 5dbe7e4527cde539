"""Models, their release policies, the versions CI posts and the artifacts they carry."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,99}$",
    "Use 1-100 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
label_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$",
    "Use 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit.",
)



def shortened(text: str, length: int) -> str:
    """`text` cut to `length` characters, the last an ellipsis, when longer: what the truncatechars filter
    writes of a hex digest, at a fraction of its cost in a table's rows."""
    return text if len(text) <= length else f"{text[:length - 1]}…"


class TaskKind(models.TextChoices):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    EMBEDDING = "embedding"
    LANGUAGE_MODEL = "language_model"


class Model(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[slug_validator])
    task = models.CharField(max_length=20, choices=TaskKind.choices)
    description = models.TextField(blank=True)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owned_models")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def _default_candidates() -> list[str]:
    return ["int8-dynamic", "int8-static", "int8-mixed", "pruned", "fp16", "distilled"]


# A language model's candidates: weight-only MatMulNBits (workers/ml/llm/candidates.py), fp16 on GPUs.
LANGUAGE_MODEL_CANDIDATES = ["int4-rtn-b32", "int4-rtn-b128", "int4-gptq-b128", "int8-b32", "fp16"]


def default_candidates(task: str) -> list[str]:
    return list(LANGUAGE_MODEL_CANDIDATES) if task == TaskKind.LANGUAGE_MODEL else _default_candidates()


class ReleasePolicy(models.Model):
    """What a release of a model must reach, and who must agree, before it ships."""

    model = models.OneToOneField(Model, on_delete=models.CASCADE, related_name="policy")
    # Automatic gate: None means "not checked".
    min_accuracy = models.FloatField(null=True, blank=True, help_text="classification, 0..1")
    max_rmse = models.FloatField(null=True, blank=True, help_text="regression")
    min_cosine = models.FloatField(null=True, blank=True, help_text="embedding, mean cosine")
    max_latency_p95_ms = models.FloatField(null=True, blank=True)
    # Language models: a candidate's budget against the fp32 model.
    max_perplexity_increase = models.FloatField(
        default=0.03, validators=[MinValueValidator(0)],
        help_text="language models: largest relative perplexity increase of a candidate (0.03 = 3 %)")
    min_greedy_agreement = models.FloatField(
        default=0.9, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="language models: least share of prompts whose greedy continuation matches the fp32 model's")
    max_size_mb = models.FloatField(null=True, blank=True)
    max_regression_vs_production = models.FloatField(
        default=0.01, validators=[MinValueValidator(0)],
        help_text="largest allowed drop of the task metric against the release in production",
    )
    # Compression.
    accuracy_budget = models.FloatField(
        default=0.01, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="largest allowed drop of the task metric of a candidate against the original",
    )
    candidates = models.JSONField(default=_default_candidates, blank=True)
    max_peak_memory_mb = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.001)],
        help_text="memory budget: a candidate whose measured peak memory is higher is never chosen",
    )
    prune_sparsity = models.FloatField(default=0.5, validators=[MinValueValidator(0), MaxValueValidator(0.99)])
    distill_temperature = models.FloatField(default=4.0, validators=[MinValueValidator(0.1)])
    distill_epochs = models.PositiveIntegerField(default=30)
    # People.
    required_approvals = models.PositiveSmallIntegerField(default=1, validators=[MaxValueValidator(10)])
    approver_group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL,
                                       help_text="empty: the 'approver' group")
    production_approvals = models.PositiveSmallIntegerField(default=1, validators=[MaxValueValidator(10)])
    # Canary.
    canary_percent = models.PositiveSmallIntegerField(default=10, validators=[MinValueValidator(1),
                                                                               MaxValueValidator(50)])
    canary_minutes = models.FloatField(default=5.0, validators=[MinValueValidator(0)])
    canary_max_error_rate_increase = models.FloatField(default=0.01, validators=[MinValueValidator(0)])
    canary_max_p95_ratio = models.FloatField(default=1.5, validators=[MinValueValidator(1)])
    canary_min_requests = models.PositiveIntegerField(
        default=50, help_text="per release; with fewer the canary is inconclusive and its window is extended")
    canary_max_extensions = models.PositiveSmallIntegerField(
        default=2, help_text="windows added to an inconclusive canary before it waits for a person")
    keep_warm = models.PositiveSmallIntegerField(default=2, help_text="previous releases kept running")

    class Meta:
        verbose_name_plural = "release policies"

    def __str__(self) -> str:
        return f"policy of {self.model}"


class Artifact(models.Model):
    """A model file in the content-addressed store: the original upload or a derived candidate."""

    class Kind(models.TextChoices):
        ORIGINAL = "original"
        EVAL_DATA = "eval-data"
        ONNX_FP32 = "onnx-fp32"
        INT8_DYNAMIC = "int8-dynamic"
        INT8_STATIC = "int8-static"
        INT8_MIXED = "int8-mixed"
        FP16 = "fp16"
        PRUNED = "pruned"
        DISTILLED = "distilled"
        INT4_RTN_B32 = "int4-rtn-b32"
        INT4_RTN_B128 = "int4-rtn-b128"
        INT4_HQQ_B32 = "int4-hqq-b32"
        INT4_HQQ_B128 = "int4-hqq-b128"
        INT4_GPTQ_B128 = "int4-gptq-b128"
        INT8_B32 = "int8-b32"

    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    file_format = models.CharField(max_length=20,
                                   help_text="onnx, safetensors, pt2, npz; hf-tar, llm-onnx-tar, jsonl")
    filename = models.CharField(max_length=255, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    release = models.ForeignKey("releases.Release", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="artifacts", help_text="the pipeline run that derived it")
    recipe = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, help_text="why this candidate could not be made or measured")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.sha256[:12]}"

    @property
    def short_sha256(self) -> str:
        """The digest as the candidates table shows it."""
        return shortened(self.sha256, 11)


class ModelVersion(models.Model):
    """One build posted by CI."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    label = models.CharField(max_length=64, validators=[label_validator])
    git_commit = models.CharField(max_length=64, validators=[RegexValidator(r"^[0-9a-fA-F]{7,64}$",
                                                                             "Expected a hex commit id.")])
    ci_run_url = models.URLField(blank=True, max_length=500)
    metadata = models.JSONField(default=dict, blank=True)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    eval_data = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="builds")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 (unique when set)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model", "-created_at", "-id"], name="version_by_model_newest")]
        constraints = [
            models.UniqueConstraint(fields=["model", "label"], name="unique_version_label"),
            models.UniqueConstraint(fields=["author", "idempotency_key"], name="unique_idempotency_key",
                                    condition=models.Q(idempotency_key__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.label}"

    @property
    def short_commit(self) -> str:
        """The commit as the pages show it."""
        return shortened(self.git_commit, 12)
