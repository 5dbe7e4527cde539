"""Shadow traffic copied by the active release's server: answers paired by prediction id."""

import io
import json
import time
from pathlib import Path

import numpy as np
import requests

from serving import oip
from serving.shadow import agreement, pair_summary
from tests.serving.conftest import serving_process
from tests.serving.test_clients import triton_infer

X = np.array([[1, 2, 3, 4], [0.5, 0, -1, 2]], dtype=np.float32)


def wait_for_pairs(url: str, pairs: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        report = requests.get(url + "/v1/shadow", timeout=5).json()
        if report["copied"] + report["errors"] + report["dropped"] >= pairs or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def test_agreement_by_task_and_the_paired_summary() -> None:
    active = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert agreement("classification", active, np.array([[0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])) == 1 / 3
    assert agreement("regression", np.array([[1.0], [2.0]]), np.array([[1.5], [1.0]])) == 0.75
    assert agreement("embedding", np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])) == 0.0
    rng = np.random.default_rng(1)
    fast = rng.normal(0.010, 0.001, 500)
    summary = pair_summary("classification", fast, fast + 0.005, np.ones(500))
    assert summary["same_label_rate"] == 1.0 and summary["pairs"] == 500
    low, high = summary["p50_difference_interval_ms"]
    assert 4.5 < low < 5 < high < 5.5 and summary["p50_difference_is_real"]
    same = pair_summary("regression", fast, rng.permutation(fast), np.zeros(500))
    assert not same["p50_difference_is_real"] and same["mean_abs_difference"] == 0.0


def test_the_caller_gets_the_active_answer_and_the_shadow_is_paired(linear_path: Path, tmp_path: Path) -> None:
    shadow_env = {"SLIPWAY_RELEASE_ID": "42"}
    with serving_process(linear_path, tmp_path, "linear", env=shadow_env) as (_, shadow_url), \
            serving_process(linear_path, tmp_path, "linear", "--shadow-url", shadow_url, "--shadow-share", "1",
                            "--shadow-task", "regression") as (_, url):
        with requests.Session() as session:
            for n in range(20):
                answer = session.post(url + oip.infer_path("linear"), json=oip.request_document({"x": X}, f"r{n}"))
                assert answer.headers["X-Release-Id"] == "41" and answer.status_code == 200
        np.testing.assert_allclose(triton_infer(url.removeprefix("http://"), "linear", {"x": X}, "scores", True),
                                   X @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]) + [0.5, -0.5, 0])
        report = wait_for_pairs(url, 21)
        assert (report["copied"], report["errors"], report["mismatched"]) == (21, 0, 0)
        assert report["pairs"] == 21 and report["mean_abs_difference"] == 0.0
        assert report["active_p50_ms"] > 0 and report["shadow_p95_ms"] > 0
        assert requests.get(shadow_url + "/v1/shadow", timeout=5).status_code == 404  # the shadow copies nothing
        shadow_log = requests.get(shadow_url + "/v1/monitoring", timeout=5).json()
        assert shadow_log["rows"] == 21 * 2


def test_a_dead_shadow_costs_the_caller_nothing(linear_path: Path, tmp_path: Path) -> None:
    with serving_process(linear_path, tmp_path, "linear", "--shadow-url", "http://127.0.0.1:1",
                         "--shadow-share", "1") as (_, url):
        with requests.Session() as session:
            for _ in range(10):
                answer = session.post(url + oip.infer_path("linear"), json=oip.request_document({"x": X}))
                assert answer.status_code == 200
        report = wait_for_pairs(url, 10)
        assert (report["copied"], report["errors"], report["pairs"]) == (0, 10, 0)


def test_the_copy_is_queued_only_once_the_caller_has_its_answer(app) -> None:
    """The request handler leaves the copy to the response's close(), which the WSGI server calls after
    it has sent the answer: the copier thread starts no work while the caller still waits."""
    offered: list = []
    app.shadow = type("Recorder", (), {"offer": lambda self, copy: offered.append(copy)})()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": oip.infer_path("linear"), "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(body := json.dumps(oip.request_document({"x": X}, "r1")).encode()),
               "CONTENT_LENGTH": str(len(body))}
    answer = app(environ, lambda status, headers: None)
    assert json.loads(b"".join(answer))["id"] == "r1" and offered == []
    answer.close()
    assert [(copy.prediction_id, copy.body) for copy in offered] == [("r1", body)]
