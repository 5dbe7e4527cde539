"""A build posted over the API goes through a real Celery worker process to its approval gate."""

import hashlib

import numpy as np
import onnx
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from releases.models import AuditEvent, Metric
from tests.browser import client_for
from tests.conftest import build_form, token_client, wait_for_status
from tests.factories import digits_model, npz_bytes
from tests.workers.ml.sklearn_builders import ml_only_classifier

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def post(client, **form) -> int:
    response = client.post("/api/v1/builds/", build_form(**form), format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()["release"]["id"]


def test_a_build_reaches_the_gate_with_its_metrics_then_two_approvers_release_it(celery_worker, users):
    ci = token_client(users["ci"])
    release_id = post(ci)
    release = wait_for_status(release_id, "awaiting_approval")

    stages = {s.name: s for s in release.stages.all()}
    assert [(n, s.status) for n, s in stages.items()] == [
        ("validate", "succeeded"),
        ("convert", "succeeded"),
        ("compress", "succeeded"),
        ("evaluate", "succeeded"),
        ("gate", "waiting"),
        ("package", "pending"),
        ("deploy_staging", "pending"),
        ("production_gate", "pending"),
        ("canary", "pending"),
    ]
    assert all(s.worker_host and s.started_at and s.attempt == 1 for s in list(stages.values())[:5])
    assert stages["evaluate"].device == "cpu" and stages["validate"].device == "cpu"
    original = release.version.artifact
    metrics = {m.name: m for m in Metric.objects.filter(release_id=release_id, artifact=original)}
    assert metrics["accuracy"].value == pytest.approx(digits_model().expected_accuracy, abs=1e-9)
    assert metrics["size_bytes"].value == len(digits_model().onnx_bytes)
    assert 0 < metrics["latency_p50_ms"].value <= metrics["latency_p95_ms"].value
    assert metrics["latency_p50_ms"].unit == "ms"

    # The author may not approve; approvers decide through the API.
    author = ci.post(f"/api/v1/releases/{release_id}/approve/", {"comment": "mine"}, format="json")
    assert author.status_code == 403
    assert author.json()["detail"] == "you are the author of this build; someone else must approve it"
    alice = token_client(users["alice"], ["approve", "releases:read"])
    assert (
        alice.post(f"/api/v1/releases/{release_id}/approve/", {"comment": "looks good"}, format="json").status_code
        == 201
    )
    detail = alice.get(f"/api/v1/releases/{release_id}/").json()
    assert detail["status"] in ("approved", "shipping")
    assert [(a["user"], a["decision"], a["comment"]) for a in detail["approvals"]] == [
        ("alice", "approve", "looks good")
    ]
    assert [s["status"] for s in detail["stages"]][:5] == ["succeeded"] * 5
    # After the gate the release ships: staging, then it waits for the production approval.
    wait_for_status(release_id, "awaiting_approval", timeout=60)

    actions = list(AuditEvent.objects.filter(release_id=release_id).order_by("id").values_list("action", flat=True))
    stage_done = ["stage.start", "stage.succeed", "stage.queue"]
    assert actions[:21] == [
        "build.received",
        "stage.queue",
        "release.start",
        *stage_done * 4,
        "stage.start",
        "stage.wait",
        "release.await_approval",
        "approval.approve",
        "stage.succeed",
        "release.approve",
    ]


def test_a_model_that_does_not_fit_its_data_fails_at_validate_with_the_reason(celery_worker, users):
    ci = token_client(users["ci"])
    wrong = npz_bytes(inputs=digits_model().eval_inputs[:, :10], labels=digits_model().eval_labels)
    release_id = post(ci, eval_data=SimpleUploadedFile("eval.npz", wrong))
    release = wait_for_status(release_id, "failed")
    stages = {s.name: s for s in release.stages.all()}
    assert stages["validate"].status == "failed"
    assert "pixels" in stages["validate"].error and "64" in stages["validate"].error
    assert release.failure_reason.startswith("validate: model: ")
    assert {s.status for name, s in stages.items() if name != "validate"} == {"skipped"}


def test_the_automatic_gate_fails_a_release_below_the_policy(celery_worker, users):
    ci = token_client(users["ci"])
    first = post(ci, version="1")
    wait_for_status(first, "awaiting_approval")
    from releases.models import ReleasePolicy

    ReleasePolicy.objects.filter(model__name="digits").update(min_accuracy=0.999)
    release_id = post(ci, version="2")
    release = wait_for_status(release_id, "failed")
    check = release.gate_checks.get()
    assert (check.name, check.comparator, check.threshold, check.passed) == ("accuracy", ">=", 0.999, False)
    shipped = Metric.objects.get(release=release, artifact=release.chosen_artifact, name="accuracy")
    assert check.measured == shipped.value
    assert release.failure_reason == f"gate: automatic gate: {check.detail}"


# Its model and graph fields are sound (so the upload takes it); the node inside is garbage.
CORRUPT_NODE = b"\x08\x07\x3a\x07\x0a\x05\xff\xff\xff\xff\xff"
TWO_FEATURES = npz_bytes(inputs=np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32),
                         labels=np.array([0, 1, 2, 0, 1, 2]))


def ml_without_outputs() -> bytes:
    model = onnx.load_from_string(ml_only_classifier())
    del model.graph.output[:]
    return model.SerializeToString()


@pytest.mark.parametrize(("artifact", "eval_data", "reason"), [
    (CORRUPT_NODE, None, "validate: model: not a valid ONNX model: Unable to parse proto from file: "
                         f"artifact sha256:{hashlib.sha256(CORRUPT_NODE).hexdigest()}. "),
    (None, npz_bytes(inputs=np.full((5, 64), np.nan, dtype=np.float32), labels=np.arange(5)),
     "validate: evaluation data: "),
    (ml_only_classifier(string_classes=True), TWO_FEATURES, "validate: model: the model's classes are text (0, 1, 2) "
                                                            "but the evaluation labels are numbers: its outputs cannot "
                                                            "be matched to the labels"),
    (ml_without_outputs(), TWO_FEATURES, "validate: model: the model has no outputs"),
], ids=["corrupt-onnx", "nan-eval-data", "onnx-ml-text-classes", "onnx-ml-no-outputs"])
def test_hostile_files_fail_the_release_at_validate_with_the_reason(celery_worker, users, artifact, eval_data,
                                                                    reason):
    form = {}
    if artifact is not None:
        form["artifact"] = SimpleUploadedFile("model.onnx", artifact)
    if eval_data is not None:
        form["eval_data"] = SimpleUploadedFile("eval.npz", eval_data)
    release = wait_for_status(post(token_client(users["ci"]), **form), "failed")
    assert release.failure_reason.startswith(reason), release.failure_reason
    validate = release.stages.get(name="validate")
    assert validate.status == "failed"
    for shown in (release.failure_reason, validate.error, *release.audit_events.values_list("reason", flat=True)):
        assert str(settings.ARTIFACT_DIR) not in shown and "/objects/" not in shown  # finding 7: no server paths


@pytest.mark.parametrize("batch", [None, 7], ids=["free-batch", "fixed-batch-of-7"])  # 171 samples: 24 7s + 3
def test_a_scikit_learn_pipeline_reaches_the_gate_with_its_accuracy_and_the_not_applicable_candidates(
        celery_worker, users, batch):
    from tests.workers.ml.sklearn_builders import scaled_logistic_regression

    model = scaled_logistic_regression(batch)
    eval_data = npz_bytes(inputs=model.x_test, labels=model.y_test)
    release_id = post(token_client(users["ci"]), model="breast-cancer",
                      artifact=SimpleUploadedFile("model.onnx", model.onnx_bytes),
                      eval_data=SimpleUploadedFile("eval.npz", eval_data))
    release = wait_for_status(release_id, "awaiting_approval")
    original = release.version.artifact
    assert release.chosen_artifact_id == original.pk
    accuracy = Metric.objects.get(release=release, artifact=original, name="accuracy")
    assert accuracy.value == pytest.approx(model.accuracy, abs=1e-12)
    compress_log = release.stages.get(name="compress").log
    for artifact in release.artifacts.exclude(pk=original.pk).exclude(kind__in=["eval-data", "original"]):
        assert artifact.error.startswith("not applicable: "), (artifact.kind, artifact.error)
        assert f"{artifact.kind}: {artifact.error}" in compress_log
    rows = client_for(users["victor"]).get(f"/releases/{release_id}/").context["candidates"].rows
    assert [(row.chosen, row.not_applicable, row.failed) for row in rows] == [(True, False, False)] + [
        (False, True, False)] * (len(rows) - 1)
    assert len(rows) > 1 and all(f"{row.artifact.kind}: {row.artifact.error}" in compress_log for row in rows[1:])


def test_the_same_build_posted_twice_gets_the_same_choice_with_intervals_and_memory(celery_worker, users):
    ci = token_client(users["ci"])
    releases = [wait_for_status(post(ci, version=version), "awaiting_approval") for version in ("1", "1-again")]
    kinds = [release.chosen_artifact.kind for release in releases]
    assert kinds[0] == kinds[1], [release.choice_reasons for release in releases]
    for release in releases:
        measured = release.artifacts.filter(error="").exclude(kind__in=["eval-data", "original"])
        figures = {(m.artifact_id, m.name): m.value for m in Metric.objects.filter(release=release)}
        original = release.version.artifact.pk
        assert figures[(original, "peak_memory_bytes")] > 0
        for artifact in measured:
            low, ratio, high = (figures[(artifact.pk, f"latency_ratio{s}")] for s in ("_low", "", "_high"))
            assert 0 < low <= ratio <= high
            assert figures[(artifact.pk, "peak_memory_bytes")] > 0
        assert "latency timed interleaved" in release.stages.get(name="evaluate").log


def test_a_memory_budget_keeps_every_candidate_over_it_out(celery_worker, users):
    from releases.models import Model, ReleasePolicy

    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model, candidates=["int8-dynamic", "fp16"], max_peak_memory_mb=0.001)
    release = wait_for_status(post(token_client(users["ci"])), "awaiting_approval")
    assert release.chosen_artifact == release.version.artifact
    for artifact in release.artifacts.filter(kind__in=["int8-dynamic", "fp16"]):
        peak = Metric.objects.get(release=release, artifact=artifact, name="peak_memory_bytes").value
        assert release.choice_reasons[str(artifact.pk)] == f"peak memory {peak / 1e6:.3g} MB over the budget of 1 kB"
