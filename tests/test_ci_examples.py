"""The CI examples in deploy/ci/ post a build: the exact command of each file runs against a live server."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from releases.models import ApiToken, ModelVersion
from tests.factories import digits_eval_npz, digits_model

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
CI = Path(__file__).resolve().parents[1] / "deploy" / "ci"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def github() -> tuple[str, dict]:
    step = yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]["post-build"]["steps"][-1]
    return step["run"], {"MODEL_VERSION": "1.0.7", "RUN_URL": "https://github.example.com/o/r/actions/runs/1",
                         "GITHUB_RUN_ID": "11", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_SHA": COMMIT}


def gitlab() -> tuple[str, dict]:
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["post-build"]
    return job["script"][0], {"CI_PIPELINE_ID": "12", "CI_PIPELINE_IID": "8", "CI_COMMIT_SHA": COMMIT,
                              "CI_JOB_URL": "https://gitlab.example.com/o/r/-/jobs/12"}


def jenkins() -> tuple[str, dict]:
    command = re.search(r"sh '''(.*?)'''", (CI / "Jenkinsfile").read_text(), re.DOTALL).group(1)
    return command, {"BUILD_TAG": "jenkins-digits-9", "BUILD_NUMBER": "9", "GIT_COMMIT": COMMIT,
                     "BUILD_URL": "https://jenkins.example.com/job/digits/9/"}


@pytest.mark.parametrize(("example", "version"), [(github, "1.0.7"), (gitlab, "1.0.8"), (jenkins, "1.0.9")],
                         ids=["github-actions", "gitlab-ci", "jenkins"])
def test_the_example_posts_a_build(example, version, live_server, users, tmp_path):
    (tmp_path / "model.onnx").write_bytes(digits_model().onnx_bytes)
    (tmp_path / "eval.npz").write_bytes(digits_eval_npz())
    token = ApiToken.issue(users["ci"], "ci-example", ["builds:write", "releases:read"])[1]
    command, ci_variables = example()
    env = {"PATH": "/usr/bin:/bin", "SLIPWAY_URL": live_server.url, "SLIPWAY_TOKEN": token, **ci_variables}
    run = subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["created"] is True and body["version"]["label"] == version
    stored = ModelVersion.objects.get(label=version)
    assert stored.git_commit == COMMIT and stored.ci_run_url.startswith("https://")
    assert stored.releases.count() == 1
