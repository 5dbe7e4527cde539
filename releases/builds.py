"""Receiving a build from CI: store its files, record the version, start its release — all or nothing."""

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from releases import llm_intake, pipeline
from releases.actors import Actor
from releases.intake import check_eval_data, model_format
from releases.models import Artifact, Model, ModelVersion, Release, ReleasePolicy
from releases.models.catalog import TaskKind, default_candidates
from releases.statemachine import TransitionError, record
from releases.storage import get_store
from releases.uploads import BadUpload, HashedUpload


class UnknownModel(LookupError):
    """The build names a model that does not exist and gives no task to create it with."""


@dataclass
class BuildRequest:
    model: str
    version: str
    git_commit: str
    artifact: HashedUpload
    eval_data: HashedUpload
    ci_run_url: str = ""
    metadata: dict = field(default_factory=dict)
    task: str = ""
    idempotency_key: str | None = None
    artifact_sha256: str = ""  # what CI says the artifact's sha256 is; empty: not said


def _model_for(req: BuildRequest) -> Model:
    model = Model.objects.filter(name=req.model).first()
    if model is not None:
        return model
    if not req.task:
        raise UnknownModel(f"model {req.model!r} does not exist; pass 'task' (classification, regression, "
                           "embedding or language_model) to create it with this build")
    model, created = Model.objects.get_or_create(name=req.model, defaults={"task": req.task})
    if created:
        ReleasePolicy.objects.create(model=model, candidates=default_candidates(model.task))
    return model


def existing_build(user, key: str | None) -> ModelVersion | None:  # noqa: ANN001
    if not key:
        return None
    return ModelVersion.objects.filter(author=user, idempotency_key=key).first()


def create_build(req: BuildRequest, user, *, token_name: str | None = None) -> tuple[ModelVersion, bool]:  # noqa: ANN001
    """Store a build and start its release. Returns (version, created); an Idempotency-Key seen before
    returns the build it made. Raises BadUpload, UnknownModel or TransitionError (duplicate label)."""
    previous = existing_build(user, req.idempotency_key)
    if previous is not None:
        return previous, False
    fmt, eval_format = _check_files(req)
    actor = Actor.person(user, token_name)
    new_objects = []
    try:
        for upload in (req.artifact, req.eval_data):
            if upload.commit():
                new_objects.append(upload.sha256)
        with transaction.atomic():
            model = _model_for(req)
            if ModelVersion.objects.filter(model=model, label=req.version).exists():
                raise TransitionError(f"model {model.name} already has a version {req.version!r}")
            artifact = Artifact.objects.create(sha256=req.artifact.sha256, size_bytes=req.artifact.size,
                                               kind=Artifact.Kind.ORIGINAL, file_format=fmt,
                                               filename=_safe_name(req.artifact.name))
            eval_data = Artifact.objects.create(sha256=req.eval_data.sha256, size_bytes=req.eval_data.size,
                                                kind=Artifact.Kind.EVAL_DATA, file_format=eval_format,
                                                filename=_safe_name(req.eval_data.name))
            version = ModelVersion.objects.create(
                model=model, label=req.version, git_commit=req.git_commit, ci_run_url=req.ci_run_url,
                metadata=req.metadata, artifact=artifact, eval_data=eval_data, author=user,
                idempotency_key=req.idempotency_key or None)
            release = Release.objects.create(version=version)
            pipeline.create_stages(release)
            record(actor, "build.received", release=release, subject=str(version),
                   after={"model": model.name, "version": version.label, "git_commit": version.git_commit,
                          "sha256": artifact.sha256, "size_bytes": artifact.size_bytes})
            pipeline.start(release, actor)
    except IntegrityError:
        _discard_unreferenced(new_objects)
        previous = existing_build(user, req.idempotency_key)
        if previous is not None:  # the same key raced us
            return previous, False
        raise TransitionError(f"model {req.model} already has a version {req.version!r}") from None
    except BaseException:
        _discard_unreferenced(new_objects)
        raise
    return version, True


def _check_files(req: BuildRequest) -> tuple[str, str]:
    """The build's artifact and evaluation data formats, once their cheap checks pass (else BadUpload)."""
    if req.artifact_sha256 and req.artifact_sha256 != req.artifact.sha256:
        raise BadUpload(f"the artifact arrived with sha256 {req.artifact.sha256}, not {req.artifact_sha256} as sent: "
                        "it was changed or cut on the way; nothing was stored")
    known = Model.objects.filter(name=req.model).values_list("task", flat=True).first()
    if (known or req.task) == TaskKind.LANGUAGE_MODEL:
        fmt = llm_intake.check_build(req.artifact)
        llm_intake.check_eval_data(req.eval_data)
        return fmt, "jsonl"
    fmt = model_format(req.artifact)
    check_eval_data(req.eval_data)
    return fmt, "npz"


def _discard_unreferenced(shas: list[str]) -> None:
    store = get_store()
    for sha in shas:
        if not Artifact.objects.filter(sha256=sha).exists():
            store.delete(sha)


def _safe_name(name: str | None) -> str:
    """Only the last path component of a client's file name, for display; never used as a path."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:255]
