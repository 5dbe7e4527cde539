import io
import json
import uuid
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from serving.app import ServingApp
from tests.serving.conftest import call, make_app
from tests.serving.onnx_models import BIAS, WEIGHT

IDENTITY = {"X-Model-Name": "linear", "X-Model-Version": "1.2.0", "X-Release-Id": "41"}


def predict(app: ServingApp, document: object) -> tuple[int, dict, dict]:
    answer = call(app, "POST", "/v1/predict", json.dumps(document).encode())
    return answer.status, answer.headers, json.loads(answer.body)


def test_json_prediction_by_name_and_bare_list(app: ServingApp) -> None:
    status, headers, body = predict(app, {"inputs": {"x": [[1, 2, 3, 4], [0, 0, 0, 0]]}})
    assert status == 200
    assert body["outputs"] == {"scores": [[5.5, 5.5, 7.0], [0.5, -0.5, 0.0]]}
    assert body["prediction_id"] == headers["X-Prediction-Id"]
    uuid.UUID(body["prediction_id"])
    _, _, bare = predict(app, {"inputs": [[1, 1, 1, 1]]})
    assert bare["outputs"] == {"scores": [[2.5, 1.5, 2.0]]}


def test_every_response_names_model_version_sha_and_release(app: ServingApp, linear_path: Path) -> None:
    from serving.integrity import file_sha256

    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/v1/predict"),
        ("GET", "/nowhere"),
        ("GET", "/v1/predict"),
    ]:
        headers = call(app, method, path, b'{"inputs": [[1, 2, 3, 4]]}').headers
        assert {key: headers[key] for key in IDENTITY} == IDENTITY, path
        assert headers["X-Model-Sha256"] == file_sha256(linear_path)
    assert "X-Prediction-Id" not in call(app, "GET", "/healthz").headers


def test_npy_body_gives_npy_answer(app: ServingApp) -> None:
    inputs = np.array([[1, 2, 3, 4], [2, 0, 0, 1]], dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, inputs)
    answer = call(app, "POST", "/v1/predict", buffer.getvalue(), "application/x-npy")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(answer.body)), inputs @ WEIGHT + BIAS)
    uuid.UUID(answer.headers["X-Prediction-Id"])


def test_npz_body_for_a_two_input_model(two_input_path: Path) -> None:
    app = make_app(two_input_path)
    app.load_model()
    buffer = io.BytesIO()
    np.savez(buffer, a=np.array([[0.5, 1.5]], dtype=np.float32), b=np.array([[2, 3]], dtype=np.int64))
    answer = call(app, "POST", "/v1/predict", buffer.getvalue(), "application/x-npz")
    assert answer.status == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(answer.body)), [[2.5, 4.5]])
    status, _, body = predict(app, {"inputs": {"a": [[1, 1]], "b": [[1, 2]]}})
    assert (status, body["outputs"]) == (200, {"total": [[2.0, 3.0]]})


def test_bad_inputs_get_400_saying_what_is_wrong(app: ServingApp, two_input_path: Path) -> None:
    cases = {
        "input 'x' has size 3 on axis 1; the model expects 4 (x: float32[?, 4])": {"inputs": [[1, 2, 3]]},
        "input 'x' has 1 dimensions [4]; the model expects 2 (x: float32[?, 4])": {"inputs": [1, 2, 3, 4]},
        "input 'x' holds strings; the model expects float32": {"inputs": [["a", "b", "c", "d"]]},
        "unknown inputs ['y'], missing inputs ['x']; the model takes x: float32[?, 4]": {"inputs": {"y": [[1]]}},
        'body must be a JSON object like {"inputs": {"name": [[...]]}} or {"inputs": [[...]]}': {"rows": []},
        '"inputs" must be an object of named arrays or, for a single-input model, an array': {"inputs": 3},
    }
    for message, document in cases.items():
        status, headers, body = predict(app, document)
        assert (status, body) == (400, {"error": message})
        uuid.UUID(headers["X-Prediction-Id"])
    status, _, body = predict(app, {"inputs": [[1, 2, 3, 4], [1]]})
    assert status == 400 and body["error"].startswith("input 'x' is not a rectangular array")
    two = make_app(two_input_path)
    two.load_model()
    status, _, body = predict(two, {"inputs": [[1, 2]]})
    assert (status, body["error"]) == (400, "the model has 2 inputs (a, b); send them by name")
    status, _, body = predict(two, {"inputs": {"a": [[1, 2]], "b": [[1.5, 2]]}})
    assert (status, body["error"]) == (400, "input 'b' holds fractional numbers; the model expects int64")


def test_unreadable_bodies_and_wrong_routes(app: ServingApp) -> None:
    assert call(app, "POST", "/v1/predict", b"{not json").status == 400
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    answer = call(app, "POST", "/v1/predict", pickled.getvalue(), "application/x-npy")
    assert answer.status == 400
    assert "holds pickled objects" in json.loads(answer.body)["error"]
    answer = call(app, "POST", "/v1/predict", b"x=1", "application/x-www-form-urlencoded")
    assert answer.status == 415
    answer = call(app, "GET", "/v1/predict")
    assert (answer.status, answer.headers["Allow"]) == (405, "POST")
    assert call(app, "POST", "/v2/predict").status == 404
    answer = call(app, "GET", "/v2/models/linear/infer")
    assert (answer.status, answer.headers["Allow"]) == (405, "POST")


def test_body_over_the_limit_is_413(linear_path: Path) -> None:
    app = make_app(linear_path, max_body_bytes=64)
    app.load_model()
    status, _, body = predict(app, {"inputs": [[1.0] * 4] * 10})
    assert status == 413
    assert body["error"].endswith("over the limit of 64 bytes")


def test_readiness_follows_the_model(linear_path: Path, tmp_path: Path) -> None:
    app = make_app(linear_path)
    assert call(app, "GET", "/healthz").status == 200
    assert (call(app, "GET", "/readyz").status, json.loads(call(app, "GET", "/readyz").body)) == (
        503,
        {"status": "loading"},
    )
    assert predict(app, {"inputs": [[1, 2, 3, 4]]})[0] == 503
    app.load_model()
    ready = call(app, "GET", "/readyz")
    assert (ready.status, json.loads(ready.body)) == (
        200,
        {"status": "ready", "inputs": ["x: float32[?, 4]"], "outputs": ["scores"]},
    )

    wrong_sha = make_app(linear_path, sha256="0" * 64)
    wrong_sha.load_model()
    answer = call(wrong_sha, "GET", "/readyz")
    assert answer.status == 503
    assert json.loads(answer.body)["error"].startswith(f"model file {linear_path} has sha256 ")

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    broken = make_app(garbage)
    broken.load_model()
    body = json.loads(call(broken, "GET", "/readyz").body)
    assert body["status"] == "failed" and body["error"].startswith("ONNX Runtime cannot load")


def test_metrics_count_predictions_by_status_with_latency_and_batch_size(app: ServingApp) -> None:
    predict(app, {"inputs": [[1, 2, 3, 4], [0, 0, 0, 0]]})
    predict(app, {"inputs": [[1, 2, 3, 4]]})
    predict(app, {"inputs": [[1, 2, 3]]})
    call(app, "GET", "/healthz")
    answer = call(app, "GET", "/metrics")
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    values = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            assert (sample.labels["model"], sample.labels["version"]) == ("linear", "1.2.0")
            key = (
                sample.name,
                *(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("model", "version")),
            )
            values[key] = sample.value
    assert values[("slipway_model_requests_total", "code=200")] == 2
    assert values[("slipway_model_requests_total", "code=400")] == 1
    assert values[("slipway_model_errors_total", "reason=bad_input")] == 1
    assert values[("slipway_model_request_duration_seconds_count",)] == 3
    assert values[("slipway_model_batch_size_count",)] == 2
    assert values[("slipway_model_batch_size_sum",)] == 3
    assert values[("slipway_model_batch_size_bucket", "le=1.0")] == 1
    assert values[("slipway_model_ready",)] == 1
