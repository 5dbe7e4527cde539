"""The serving runtime's monitoring path: input bins, abnormal outputs, the prediction log and
/v1/monitoring, with a profile made from real evaluation data by workers/ml/profile.py."""

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving import oip
from serving.app import ServingApp
from serving.watch import Profile, Watcher
from tests.factories import digits_model
from tests.serving.conftest import call, make_app
from workers.ml.evalset import evalset_from_arrays
from workers.ml.profile import build_profile, feature_edges, reference_counts, write_profile


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("digits")
    model = folder / "model.onnx"
    model.write_bytes(digits_model().onnx_bytes)
    m = digits_model()
    evalset = evalset_from_arrays({"inputs": m.eval_inputs, "labels": m.eval_labels})
    return model, write_profile(model, evalset, "classification", folder / "profile.json")


def test_edges_are_deciles_and_reference_counts_every_row():
    column = np.arange(100, dtype=np.float32)
    edges = feature_edges(column)
    assert edges == pytest.approx([9.9, 19.8, 29.7, 39.6, 49.5, 59.4, 69.3, 79.2, 89.1])
    assert reference_counts(column, edges) == [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    assert feature_edges(np.zeros(5)) == [0.0]
    assert reference_counts(np.zeros(5), [0.0]) == [0, 5]


def test_the_profile_of_the_digits_model(digits_files):
    document = json.loads(digits_files[1].read_text())
    m = digits_model()
    assert len(document["features"]) == 64
    assert document["prediction"] == {"output": "probabilities", "kind": "argmax"}
    assert [sum(c) for c in document["reference"]] == [len(m.eval_inputs)] * 64
    low, high = document["outputs"]["probabilities"]
    assert 0 < low < 0.01 and 0.99 < high < 1
    assert document["features"][0] == {"input": "pixels", "index": 0, "edges": [0.0]}


def test_watcher_bins_inputs_counts_abnormal_rows_and_logs_predictions(digits_files):
    profile = Profile.load(digits_files[1])
    watcher = Watcher(profile, log_size=3)
    rows = np.zeros((2, 64), dtype=np.float32)
    rows[1, 5] = 1.0
    good = np.full((2, 10), 0.1, dtype=np.float32)
    good[1, 7] = 0.5
    assert watcher.observe("a", {"pixels": rows}, {"probabilities": good}, 2) == {
        "nan": 0, "inf": 0, "out_of_range": 0}
    bad = np.array([[np.nan] * 10, [np.inf] + [0.1] * 9, [1.5] + [0.1] * 9], dtype=np.float32)
    assert watcher.observe("b", {"pixels": np.zeros((3, 64), np.float32)}, {"probabilities": bad}, 3) == {
        "nan": 1, "inf": 1, "out_of_range": 1}
    report = watcher.report(after=0)
    assert report["rows"] == 5 and report["abnormal"] == {"nan": 1, "inf": 1, "out_of_range": 1}
    edges5 = profile.features[5].edges
    pixel5 = report["features"][5]
    assert pixel5["name"] == "pixels[5]" and pixel5["reference"] == list(profile.reference[5])
    at_one = sum(1 for e in edges5 if e <= 1.0)
    assert pixel5["counts"][at_one] == 1 and pixel5["counts"][1] == 4  # four zero rows: 0.0 is the first edge
    assert [(p[0], p[1], p[3]) for p in report["predictions"]] == [(3, "b:0", 0), (4, "b:1", 0), (5, "b:2", 0)]
    assert [p[1] for p in watcher.report(after=4)["predictions"]] == ["b:2"]
    assert report["last_seq"] == 5


def test_the_monitoring_endpoint_and_the_abnormal_output_metric(digits_files):
    model, profile = digits_files
    app: ServingApp = make_app(model, model_name="digits", version="1", profile=profile)
    app.load_model()
    x = digits_model().eval_inputs[:1].astype(np.float32)
    answer = call(app, "POST", "/v2/models/digits/infer", json.dumps(oip.request_document({"pixels": x})).encode())
    assert answer.status == 200
    pid = answer.headers["X-Prediction-Id"]
    huge_body = oip.request_document({"pixels": np.full((1, 64), 1e30, dtype=np.float32)})
    huge = call(app, "POST", "/v2/models/digits/infer", json.dumps(huge_body).encode())
    assert huge.status == 200  # softmax of huge logits: NaN, counted but still answered
    report = json.loads(call(app, "GET", "/v1/monitoring?after=0").body)
    assert report["rows"] == 2 and report["task"] == "classification"
    assert report["predictions"][0][1] == pid
    probabilities = oip.response_outputs(json.loads(answer.body))["probabilities"]
    assert report["predictions"][0][3] == int(np.argmax(probabilities[0]))
    assert sum(report["abnormal"].values()) == 1
    families = {f.name: f for f in text_string_to_metric_families(call(app, "GET", "/metrics").body.decode())}
    abnormal = [(s.labels["kind"], s.value) for s in families["slipway_model_abnormal_outputs"].samples
                if s.name.endswith("_total")]
    kind = next(k for k, n in report["abnormal"].items() if n)
    assert abnormal == [(kind, 1.0)]
    bad = call(app, "GET", "/v1/monitoring?after=x")
    assert bad.status == 400 and json.loads(bad.body)["error"] == "after must be a sequence number, not 'x'"


def test_an_unreadable_profile_keeps_the_server_unready(digits_files, tmp_path):
    broken = tmp_path / "profile.json"
    broken.write_text('{"version": 99}')
    app = make_app(digits_files[0], profile=broken)
    app.load_model()
    answer = call(app, "GET", "/readyz")
    assert answer.status == 503
    assert json.loads(answer.body)["error"] == f"monitoring profile {broken} is unusable: profile version 99 is not 1"


def test_build_profile_of_a_regression_model_logs_values(tmp_path):
    from tests.serving.onnx_models import linear_model

    model = linear_model(tmp_path / "linear.onnx")
    inputs = np.arange(40, dtype=np.float32).reshape(10, 4)
    document = build_profile(model, evalset_from_arrays({"inputs": inputs}), "regression")
    assert document["prediction"] == {"output": "scores", "kind": "value"}
    assert [f["index"] for f in document["features"]] == [0, 1, 2, 3]
