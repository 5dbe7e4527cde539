"""What the API reads and writes."""

import json

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from releases import canaries, routing
from releases.models import (
    Approval,
    Artifact,
    AuditEvent,
    Canary,
    Deployment,
    Environment,
    GateCheck,
    Metric,
    Model,
    ModelVersion,
    Release,
    ReleasePolicy,
    RollbackDrill,
    Service,
    StageRun,
    TrafficChange,
)
from releases.models.catalog import TaskKind, label_validator, slug_validator
from releases.models.pipeline import ReleaseStatus


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def check_metadata_size(size: int) -> None:
    """A build's metadata JSON is at most SLIPWAY_MAX_METADATA_BYTES, however it is sent."""
    if size > settings.SLIPWAY_MAX_METADATA_BYTES:
        raise serializers.ValidationError(f"metadata is larger than {settings.SLIPWAY_MAX_METADATA_BYTES} bytes")


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(serializers.Field):
    """A JSON object, sent as a multipart form field (a string), as JSON, or as UTF-8 bytes (a body's part)."""

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, UploadedFile):
            raise serializers.ValidationError(
                "sent as a file; send the JSON object as a plain form field (curl -F 'metadata={...}', not =@file)")
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError as exc:
                raise serializers.ValidationError(f"not UTF-8 text: {exc.reason} at position {exc.start}") from None
        if isinstance(data, str):
            check_metadata_size(len(data.encode()))
            try:
                data = json.loads(data) if data.strip() else {}
            except json.JSONDecodeError as exc:
                raise serializers.ValidationError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError(f"must be a JSON object, not {_json_kind(data)}")
        return data

    def to_representation(self, value: dict) -> dict:
        return value


class BuildFieldsSerializer(serializers.Serializer):
    """What every build says about itself, however its files are sent."""

    model = serializers.CharField(validators=[slug_validator], help_text="the model's name")
    version = serializers.CharField(validators=[label_validator], help_text="a label unique per model")
    git_commit = serializers.RegexField(r"^[0-9a-fA-F]{7,64}$", error_messages={"invalid": "expected a hex commit"})
    ci_run_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    task = serializers.ChoiceField(choices=TaskKind.choices, required=False, allow_blank=True,
                                   help_text="creates the model on its first build")
    artifact_sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False,
                                             error_messages={"invalid": "expected a sha256 (64 hex digits)"},
                                             help_text="the artifact's sha256 as CI computed it: a build whose "
                                                       "bytes arrive different is refused")


class BuildSerializer(BuildFieldsSerializer):
    """A build posted as a multipart form (POST /api/v1/builds/)."""

    metadata = JSONObjectField(required=False, default=dict)
    artifact = serializers.FileField(help_text=".onnx, .safetensors (+ metadata.architecture) or .pt2; a language "
                                               "model: an uncompressed tar of its Hugging Face folder")
    eval_data = serializers.FileField(help_text=".npz: 'inputs' or 'input:<name>' arrays, and 'labels'; a language "
                                                "model: JSON Lines of {\"text\"} and {\"prompt\", \"completion\"}")


class StreamedBuildSerializer(BuildFieldsSerializer):
    """A build sent as a raw body (PUT /api/v1/builds/): these fields in the query string; the body is
    metadata_bytes of metadata JSON, then eval_data_bytes of evaluation data, then the artifact's bytes."""

    artifact_name = serializers.CharField(max_length=255, help_text="the artifact's file name: its suffix "
                                          "names the format (.onnx, .safetensors, .pt2; .tar for a language model)")
    eval_data_name = serializers.CharField(max_length=255, help_text="the evaluation data's file name")
    metadata_bytes = serializers.IntegerField(
        min_value=0, default=0, help_text="how many of the body's first bytes are the build's metadata: a JSON object "
        "in UTF-8, at most SLIPWAY_MAX_METADATA_BYTES (64 KiB by default); 0: no metadata")
    eval_data_bytes = serializers.IntegerField(min_value=1, help_text="how many bytes after the metadata are the "
                                               "evaluation data; the rest of the body is the artifact")

    def validate_metadata_bytes(self, value: int) -> int:
        check_metadata_size(value)
        return value

    def validate(self, attrs: dict) -> dict:
        # A query string has no room for 64 KiB of metadata (gunicorn refuses a request line over 4094 bytes).
        if "metadata" in self.initial_data:
            raise serializers.ValidationError({"metadata": [
                "send metadata in the body, not in the query string: its first metadata_bytes bytes, then "
                "eval_data's, then the artifact's"]})
        return attrs


class BodyMetadataSerializer(serializers.Serializer):
    """A streamed build's metadata: the body's first metadata_bytes bytes."""

    metadata = JSONObjectField()


class PolicySerializer(serializers.ModelSerializer):
    approver_group: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True,
                                                                             allow_null=True)

    class Meta:
        model = ReleasePolicy
        exclude = ["id", "model"]


class ModelSerializer(serializers.ModelSerializer):
    policy = PolicySerializer(read_only=True)
    versions = serializers.IntegerField(source="version_count", read_only=True)

    class Meta:
        model = Model
        fields = ["name", "task", "description", "created_at", "versions", "policy"]


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "kind", "sha256", "size_bytes", "file_format", "filename", "parent", "recipe", "error"]


class VersionSerializer(serializers.ModelSerializer):
    model: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    author: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    artifact = ArtifactSerializer(read_only=True)
    release_ids = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "label", "git_commit", "ci_run_url", "metadata", "author", "created_at",
                  "artifact", "release_ids"]

    def get_release_ids(self, obj: ModelVersion) -> list[int]:
        return [r.pk for r in obj.releases.all()]


class StageSerializer(serializers.ModelSerializer):
    class Meta:
        model = StageRun
        fields = ["name", "position", "queue", "status", "attempt", "worker_host", "device", "progress", "step",
                  "error", "queued_at", "started_at", "finished_at", "duration_s"]


class MetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = Metric
        fields = ["name", "value", "unit", "artifact"]


class GateCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = GateCheck
        fields = ["gate", "name", "comparator", "threshold", "measured", "passed", "detail"]


class ApprovalSerializer(serializers.ModelSerializer):
    user: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Approval
        fields = ["gate", "user", "decision", "comment", "created_at"]


class ReleaseSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="version.model.name", read_only=True)
    version = serializers.CharField(source="version.label", read_only=True)
    stages = StageSerializer(many=True, read_only=True)
    metrics = MetricSerializer(many=True, read_only=True)
    gate_checks = GateCheckSerializer(many=True, read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    candidates = ArtifactSerializer(source="artifacts", many=True, read_only=True)
    chosen_artifact = serializers.IntegerField(source="shipped_artifact_id", read_only=True, allow_null=True,
                                               help_text="the artifact this release ships; null while none is "
                                                         "chosen and when the release failed")
    choice_reasons = serializers.DictField(source="shown_choice_reasons", child=serializers.CharField(),
                                           read_only=True)

    class Meta:
        model = Release
        fields = ["id", "model", "version", "status", "failure_reason", "created_at", "updated_at",
                  "chosen_artifact", "choice_reasons", "stages", "metrics", "gate_checks", "approvals",
                  "candidates"]


class ReleaseSummarySerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="version.model.name", read_only=True)
    version = serializers.CharField(source="version.label", read_only=True)

    class Meta:
        model = Release
        fields = ["id", "model", "version", "status", "failure_reason", "created_at", "updated_at"]


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["at", "actor_label", "action", "subject", "before", "after", "reason"]


class BuildResponseSerializer(serializers.Serializer):
    version = VersionSerializer()
    release = ReleaseSummarySerializer()
    created = serializers.BooleanField()


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="release.version.model.name", read_only=True)
    version = serializers.CharField(source="release.version.label", read_only=True)

    class Meta:
        model = Deployment
        fields = ["release", "model", "version", "role", "traffic_percent", "endpoint", "image", "updated_at"]


class TrafficChangeSerializer(serializers.ModelSerializer):
    actor: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True,
                                                                    allow_null=True)
    model = serializers.CharField(source="service.model.name", read_only=True)

    class Meta:
        model = TrafficChange
        fields = ["id", "model", "at", "action", "shares", "actor", "reason"]


class CanarySerializer(serializers.ModelSerializer):
    release = serializers.IntegerField(source="deployment.release_id", read_only=True)

    class Meta:
        model = Canary
        fields = ["release", "status", "started_at", "ends_at", "extensions", "stable_requests", "canary_requests",
                  "requests_needed", "verdict", "decided_at"]


class ServiceSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    address = serializers.SerializerMethodField(help_text="where clients reach this model in this environment")
    deployments = DeploymentSerializer(source="running", many=True, read_only=True)
    canary = serializers.SerializerMethodField()

    class Meta:
        model = Service
        fields = ["model", "environment", "path", "address", "deployments", "canary"]

    def get_address(self, service: Service) -> str:
        return routing.address(service)

    @extend_schema_field(CanarySerializer(allow_null=True))
    def get_canary(self, service: Service) -> dict | None:
        run = canaries.open_canary_of(service)
        return None if run is None else CanarySerializer(run).data


class EnvironmentSerializer(serializers.ModelSerializer):
    services = ServiceSerializer(source="services_now", many=True, read_only=True)

    class Meta:
        model = Environment
        fields = ["name", "target", "proxy_port", "requires_approval", "services"]


class DrillSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="service.model.name", read_only=True)
    environment = serializers.CharField(source="service.environment.name", read_only=True)
    result = serializers.SerializerMethodField(help_text="ok, or failed (see reason)")
    actor = serializers.CharField(source="actor_label", read_only=True)

    class Meta:
        model = RollbackDrill
        fields = ["id", "model", "environment", "started_at", "actor", "scheduled", "current", "previous",
                  "result", "back_ms", "forward_ms", "reason"]

    def get_result(self, drill: RollbackDrill) -> str:
        return "ok" if drill.ok else "failed"


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="why; it goes into the audit trail")
    expected_release = serializers.IntegerField(
        required=False, help_text="the release you saw serving; a repeated call then changes nothing")


class EnvironmentRollbackSerializer(RollbackSerializer):
    model = serializers.CharField(
        required=False, max_length=100,
        help_text="the model to roll back; needed when more than one model serves in the environment")


class CanaryDecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="why; it goes into the audit trail")


class ServiceLiveAtSerializer(serializers.Serializer):
    model = serializers.CharField()
    change = TrafficChangeSerializer(allow_null=True)
    releases = ReleaseSummarySerializer(many=True)


class LiveAtSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    change = TrafficChangeSerializer(allow_null=True, required=False, help_text="one model's: its latest move")
    releases = ReleaseSummarySerializer(many=True)
    services = ServiceLiveAtSerializer(many=True, required=False, help_text="the environment's: each model's")


class ReleaseFilterSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, max_length=100)
    status = serializers.ChoiceField(choices=ReleaseStatus.choices, required=False)
