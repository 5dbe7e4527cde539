"""A model server's /metrics, after real predictions, as Prometheus' own promtool reads it."""

import json
import shutil
import subprocess

import pytest

from serving.app import ServingApp
from tests.serving.conftest import call


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
def test_promtool_accepts_a_model_servers_metrics(app: ServingApp) -> None:
    for document in ({"inputs": [[1, 2, 3, 4]]}, {"inputs": [[1, 2, 3]]}):
        call(app, "POST", "/v1/predict", json.dumps(document).encode())
    text = call(app, "GET", "/metrics").body.decode()
    assert "slipway_model_requests_total" in text and "slipway_model_errors_total" in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
