"""REST API views: thin wrappers around releases' domain functions."""

from django.db.models import Count
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from releases import approvals, pipeline
from releases.actors import Actor
from releases.api import serializers as s
from releases.api.auth import ApiTokenAuthentication
from releases.builds import BuildRequest, create_build
from releases.models import ApiToken, Model, ModelVersion, Release
from releases.uploads import HashedUpload, StreamedBuild, streamed_build, streaming_to_store

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Retrying with the same key returns the build made the first time, never a duplicate.")


def token_name(request: Request) -> str | None:
    return request.auth.name if isinstance(request.auth, ApiToken) else None


class BuildView(generics.GenericAPIView):
    """CI sends a model build: its artifact, evaluation data and commit. Starts a release.

    POST: a multipart form. PUT: the fields in the query string and a raw body (the metadata JSON's
    bytes, eval_data's, then the artifact's), streamed to the store at the speed of the disk: the way
    for big builds."""

    # CI posts with a token; a session's CSRF check would read the body before the handler is set.
    authentication_classes = [ApiTokenAuthentication]
    parser_classes = [MultiPartParser]
    serializer_class = s.BuildSerializer
    scopes = {"post": "builds:write", "put": "builds:write"}
    roles = {"post": "post_build", "put": "post_build"}

    @extend_schema(parameters=[IDEMPOTENCY_HEADER],
                   responses={201: s.BuildResponseSerializer, 200: s.BuildResponseSerializer})
    def post(self, request: Request) -> Response:
        # Only here, once the token and its scope are checked, do files stream into the store.
        with streaming_to_store(request._request):
            key = idempotency_key(request)
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            return self._create(request, data, data["artifact"], data["eval_data"], key)

    @extend_schema(parameters=[IDEMPOTENCY_HEADER, s.StreamedBuildSerializer],
                   request={"application/octet-stream": OpenApiTypes.BINARY},
                   description="The body: `metadata_bytes` bytes of the build's metadata (a JSON object in "
                               "UTF-8), then `eval_data_bytes` bytes of evaluation data, then the artifact's "
                               "bytes. The fields go in the query string, metadata never (refused with 400).",
                   responses={201: s.BuildResponseSerializer, 200: s.BuildResponseSerializer})
    def put(self, request: Request) -> Response:
        # The token, scope, role and fields are checked before a byte of the body is read, the metadata
        # before a byte of the files is stored.
        key = idempotency_key(request)
        fields = s.StreamedBuildSerializer(data=request.query_params)
        fields.is_valid(raise_exception=True)
        data = fields.validated_data
        layout = StreamedBuild(data["artifact_name"], data["eval_data_name"], data["eval_data_bytes"],
                               data["metadata_bytes"])
        with streamed_build(request._request, layout) as body:
            metadata = s.BodyMetadataSerializer(data={"metadata": body.metadata()})
            metadata.is_valid(raise_exception=True)
            artifact, eval_data = body.files()
            return self._create(request, data | metadata.validated_data, artifact, eval_data, key)

    def _create(self, request: Request, data: dict, artifact: HashedUpload, eval_data: HashedUpload,
                key: str | None) -> Response:
        version, created = create_build(
            BuildRequest(model=data["model"], version=data["version"], git_commit=data["git_commit"].lower(),
                         artifact=artifact, eval_data=eval_data, ci_run_url=data.get("ci_run_url", ""),
                         metadata=data.get("metadata", {}), task=data.get("task", ""), idempotency_key=key,
                         artifact_sha256=data.get("artifact_sha256", "").lower()),
            request.user, token_name=token_name(request))
        release = version.releases.order_by("id").first()
        body = s.BuildResponseSerializer({"version": version, "release": release, "created": created}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and not (1 <= len(key) <= 128 and key.isprintable()):
        raise ValidationError({"Idempotency-Key": ["must be 1-128 printable characters"]})
    return key


class ModelViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.ModelSerializer
    lookup_field = "name"
    queryset = (Model.objects.select_related("policy__approver_group")
                .annotate(version_count=Count("versions")).order_by("name"))

    @extend_schema(responses=s.VersionSerializer(many=True))
    @action(detail=True)
    def versions(self, request: Request, name: str) -> Response:
        model = get_object_or_404(Model, name=name)
        rows = (ModelVersion.objects.filter(model=model).select_related("model", "author", "artifact")
                .prefetch_related("releases"))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.VersionSerializer(page, many=True).data)


@extend_schema_view(list=extend_schema(parameters=[s.ReleaseFilterSerializer]))
class ReleaseViewSet(viewsets.ReadOnlyModelViewSet):
    scopes = {"approve": "approve", "reject": "approve", "cancel": "deploy"}
    roles = {"cancel": "cancel"}

    def get_queryset(self):  # noqa: ANN201
        rows = Release.objects.select_related("version__model")
        if self.action != "list":
            rows = rows.prefetch_related("stages", "metrics", "gate_checks", "approvals__user", "artifacts")
        if self.action == "list":
            wanted = s.ReleaseFilterSerializer(data=self.request.query_params)
            wanted.is_valid(raise_exception=True)
            if "model" in wanted.validated_data:
                rows = rows.filter(version__model__name=wanted.validated_data["model"])
            if "status" in wanted.validated_data:
                rows = rows.filter(status=wanted.validated_data["status"])
        return rows

    def get_serializer_class(self):  # noqa: ANN201
        if self.action == "list":
            return s.ReleaseSummarySerializer
        if self.action in ("approve", "reject"):
            return s.DecisionSerializer
        if self.action == "cancel":
            return s.CancelSerializer
        return s.ReleaseSerializer

    def _decide(self, request: Request, pk: str, decision: str) -> Response:
        serializer = s.DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        release = get_object_or_404(Release, pk=pk)
        approval = approvals.decide(release.pk, request.user, decision, serializer.validated_data["comment"],
                                    token_name=token_name(request))
        return Response(s.ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.DecisionSerializer, responses={201: s.ApprovalSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        return self._decide(request, pk, "approve")

    @extend_schema(request=s.DecisionSerializer, responses={201: s.ApprovalSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        return self._decide(request, pk, "reject")

    @extend_schema(request=s.CancelSerializer, responses={200: s.ReleaseSummarySerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        serializer = s.CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        release = get_object_or_404(Release, pk=pk)
        reason = f"cancelled by {request.user.get_username()}: {serializer.validated_data['reason']}"
        release = pipeline.cancel(release.pk, Actor.person(request.user, token_name(request)), reason)
        return Response(s.ReleaseSummarySerializer(release).data)

    @extend_schema(responses=s.AuditEventSerializer(many=True))
    @action(detail=True)
    def audit(self, request: Request, pk: str) -> Response:
        release = get_object_or_404(Release, pk=pk)
        page = self.paginate_queryset(release.audit_events.all())
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)
