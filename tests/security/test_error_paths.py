"""Finding 7: what people read about a failure names an artifact by its sha256, never a server path: the stage's
log and step, a candidate's error, the store's own errors (stage errors and audit reasons: test_hostile_inputs)."""

import os
import sys
import sysconfig
import traceback

import onnx
import pytest

from releases.models import Artifact, Release
from releases.storage import get_store, work_root
from releases.storage.base import StoreError
from tests.conftest import build_form, token_client
from workers.compression import candidate_failed, store_candidate
from workers.context import StageContext
from workers.ml.compress import Candidate


@pytest.fixture
def release(users, settings, tmp_path) -> Release:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    response = token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    return Release.objects.get(pk=response.json()["release"]["id"])


def checker_error(path) -> str:
    """What the ONNX checker really says about an unreadable file: it quotes the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x08\x07 not a model")
    with pytest.raises(Exception) as raised:
        onnx.checker.check_model(str(path))
    assert str(path) in str(raised.value)
    return str(raised.value).splitlines()[0]


def test_the_stage_log_and_step_name_the_artifact_not_its_path(release, settings):
    sha = release.version.artifact.sha256
    stored = get_store().local_path(sha)
    ctx = StageContext(release=release, stage=release.stages.get(name="validate"), device="cpu")
    ctx.log(f'Traceback: File "{stored}", line 1\nOSError: cannot read {work_root()}/release-1/validate/x.onnx')
    ctx.progress(100, f"loading {stored}")
    stage = release.stages.get(name="validate")
    assert stage.log.endswith(f'Traceback: File "artifact sha256:{sha}", line 1\nOSError: cannot read x.onnx\n')
    assert stage.step == f"loading artifact sha256:{sha}"
    assert str(settings.ARTIFACT_DIR) not in stage.log + stage.step


def test_a_candidate_error_names_no_path(release, settings):
    work = work_root() / f"release-{release.pk}" / "compress"
    said = checker_error(work / "int8-dynamic.onnx")
    built = store_candidate(release, release.version.artifact,
                            Candidate("int8-dynamic", None, {}, f"the built model is invalid: {said}"))
    evaluation = checker_error(work / "fp16.onnx")
    measured = store_candidate(release, release.version.artifact, Candidate("fp16", work / "fp16.onnx", {}))
    candidate_failed(measured, f"evaluation: {evaluation}")
    for artifact in Artifact.objects.filter(pk__in=[built.pk, measured.pk]):
        assert str(settings.ARTIFACT_DIR) not in artifact.error
    assert Artifact.objects.get(pk=built.pk).error == f"the built model is invalid: {said}".replace(
        str(work) + "/", "")
    assert "fp16.onnx" in Artifact.objects.get(pk=measured.pk).error


def test_the_store_names_a_missing_object_by_its_sha256(settings, tmp_path):
    settings.SLIPWAY_STORE, settings.ARTIFACT_DIR = "fs", tmp_path / "artifacts"
    sha = "cd" * 32
    for read in (get_store().open, get_store().local_path):
        with pytest.raises(StoreError) as raised:
            read(sha)
        assert str(raised.value) == f"no object {sha} in the artifact store (SLIPWAY_ARTIFACT_DIR)"


def test_a_crashed_stage_traceback_names_code_from_where_it_is_installed(release):
    try:
        onnx.load_model_from_string(b"\x08\x07 not a model")
    except Exception:
        said = traceback.format_exc()
    assert f'File "{sysconfig.get_paths()["purelib"]}/onnx/__init__.py"' in said
    ctx = StageContext(release=release, stage=release.stages.get(name="validate"), device="cpu")
    ctx.log(said)
    log = release.stages.get(name="validate").log
    assert 'File "onnx/__init__.py", line ' in log and "DecodeError" in log
    assert sys.prefix not in log and os.path.realpath(sys.prefix) not in log
