"""Choosing which candidate a release ships: the pipeline's choice, or a person's before approving."""

from django.db import transaction

from releases.actors import Actor
from releases.approvals import NotAllowed, waiting_gate, why_not
from releases.gates import run_automatic_gate
from releases.models import Artifact, Release
from releases.statemachine import TransitionError, locked_release, record


def why_no_pick(user, release: Release) -> tuple[type[Exception], str] | None:  # noqa: ANN001
    """Why this user cannot pick another candidate of this release now (and the error it raises), or None."""
    if waiting_gate(release) != "release":
        return TransitionError, (f"release #{release.pk} is {release.status}; a candidate can only be picked "
                                 "while it waits for approval")
    reason = why_not(user, release)
    if reason:
        return NotAllowed, reason
    if any(a.gate == "release" for a in release.approvals.all()):
        return TransitionError, ("people have already decided on the current choice; picking another would "
                                 "change what they approved")
    return None


def pick(release_id: int, artifact_id: int, user) -> Release:  # noqa: ANN001
    """A person with the right to approve ships another candidate; the automatic gate judges it again."""
    with transaction.atomic():
        release = locked_release(release_id)
        refused = why_no_pick(user, release)
        if refused is not None:
            kind, reason = refused
            raise kind(reason)
        artifact = Artifact.objects.filter(pk=artifact_id, release=release).first()
        if artifact is None:
            raise TransitionError(f"artifact #{artifact_id} is not a candidate of release #{release_id}")
        if artifact.error:
            raise TransitionError(f"candidate {artifact.kind} failed: {artifact.error}")
        before = release.chosen_artifact_id
        release.chosen_artifact = artifact
        release.choice_reasons = release.choice_reasons | {
            str(artifact.pk): f"picked by {user.get_username()} instead of #{before}"}
        release.save(update_fields=["chosen_artifact", "choice_reasons", "updated_at"])
        failed = [c.detail for c in run_automatic_gate(release, release.version.model.policy) if not c.passed]
        if failed:
            raise TransitionError(f"{artifact.kind} does not pass the automatic gate: {'; '.join(failed)}")
        record(Actor.person(user), "release.pick_candidate", release=release, subject=str(release),
               before={"chosen_artifact": before}, after={"chosen_artifact": artifact.pk, "kind": artifact.kind})
        return release


def serving_artifact(release: Release) -> Artifact:
    """What a release serves: the chosen candidate, else the converted ONNX model, else the original."""
    if release.chosen_artifact is not None:
        return release.chosen_artifact
    converted = release.artifacts.filter(kind=Artifact.Kind.ONNX_FP32, error="").first()
    return converted or release.version.artifact
