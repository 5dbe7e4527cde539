"""The Open Inference Protocol endpoints of the WSGI app, called in-process."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from serving import oip
from serving.app import ServingApp
from tests.serving.conftest import call, make_app
from tests.serving.onnx_models import BIAS, WEIGHT

X = np.array([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=np.float32)


def infer(app: ServingApp, document: object, path: str = "/v2/models/linear/infer") -> tuple[int, dict, dict]:
    answer = call(app, "POST", path, json.dumps(document).encode())
    return answer.status, answer.headers, json.loads(answer.body)


def tensor(data: object, shape: list[int], datatype: str = "FP32", name: str = "x") -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_health_server_and_model_metadata(app: ServingApp, two_input_path: Path) -> None:
    assert (call(app, "GET", "/v2/health/live").status, call(app, "GET", "/v2/health/ready").status) == (200, 200)
    assert json.loads(call(app, "GET", "/v2").body)["extensions"] == ["binary_tensor_data"]
    metadata = json.loads(call(app, "GET", "/v2/models/linear").body)
    assert metadata == {
        "name": "linear", "versions": ["1.2.0"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert call(app, "GET", "/v2/models/linear/versions/1.2.0").status == 200
    assert json.loads(call(app, "GET", "/v2/models/linear/ready").body) == {"name": "linear", "ready": True}
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/linear/versions/9/ready"):
        answer = call(app, "GET", path)
        assert answer.status == 404 and set(json.loads(answer.body)) == {"error"}, path
    two = make_app(two_input_path, model_name="two")
    two.load_model()
    inputs = json.loads(call(two, "GET", "/v2/models/two").body)["inputs"]
    assert inputs == [{"name": "a", "datatype": "FP32", "shape": [-1, 2]},
                      {"name": "b", "datatype": "INT64", "shape": [-1, 2]}]


def test_not_ready_until_loaded(linear_path: Path) -> None:
    app = make_app(linear_path)
    assert call(app, "GET", "/v2/health/live").status == 200
    assert call(app, "GET", "/v2/health/ready").status == 503
    assert call(app, "GET", "/v2/models/linear/ready").status == 503
    assert infer(app, {"inputs": [tensor(X.ravel().tolist(), [2, 4])]})[0] == 503


def test_json_infer_flat_or_nested_with_id(app: ServingApp) -> None:
    for data in (X.ravel().tolist(), X.tolist()):
        status, headers, body = infer(app, {"id": "req-7", "inputs": [tensor(data, [2, 4])]})
        assert status == 200
        assert (body["model_name"], body["model_version"], body["id"]) == ("linear", "1.2.0", "req-7")
        assert headers["X-Prediction-Id"] == "req-7"
        [output] = body["outputs"]
        assert (output["name"], output["datatype"], output["shape"]) == ("scores", "FP32", [2, 3])
        np.testing.assert_array_equal(np.reshape(output["data"], (2, 3)), X @ WEIGHT + BIAS)
    status, headers, body = infer(app, {"id": "not a safe id!", "inputs": [tensor(X.tolist(), [2, 4])]})
    assert body["id"] == "not a safe id!" and headers["X-Prediction-Id"] != body["id"]


def test_binary_tensor_data_both_ways(app: ServingApp) -> None:
    header = json.dumps({
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
    }).encode()
    environ_extra = {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": str(len(header))}
    answer = call(app, "POST", "/v2/models/linear/infer", header + X.tobytes(), "application/octet-stream",
                  environ_extra)
    assert answer.status == 200
    length = int(answer.headers[oip.HEADER_LENGTH])
    document = json.loads(answer.body[:length])
    [output] = document["outputs"]
    assert output["parameters"] == {"binary_data_size": 24}
    scores = np.frombuffer(answer.body[length:], dtype="<f4").reshape(output["shape"])
    np.testing.assert_array_equal(scores, X @ WEIGHT + BIAS)


def test_requested_outputs_and_two_inputs(two_input_path: Path) -> None:
    app = make_app(two_input_path, model_name="two")
    app.load_model()
    document = {"inputs": [tensor([0.5, 1.5], [1, 2], "FP32", "a"), tensor([2, 3], [1, 2], "INT64", "b")],
                "outputs": [{"name": "total"}]}
    status, _, body = infer(app, document, "/v2/models/two/infer")
    assert (status, body["outputs"][0]["data"]) == (200, [2.5, 4.5])
    status, _, body = infer(app, document | {"outputs": [{"name": "nope"}]}, "/v2/models/two/infer")
    assert (status, body) == (400, {"error": "unknown output 'nope'; the model's outputs are ['total']"})


@pytest.mark.parametrize(("document", "message"), [
    ({"inputs": [tensor([1.0] * 8, [2, 4], "FP64")]}, "input 'x' has datatype 'FP64'; the model expects FP32"),
    ({"inputs": [tensor([1.0] * 6, [2, 3])]}, "input 'x' has size 3 on axis 1; the model expects 4"),
    ({"inputs": [tensor([1.0] * 7, [2, 4])]}, "input 'x': shape [2, 4] needs 8 values, data has 7"),
    ({"inputs": [tensor([1.0] * 4, [1, 4], name="y")]}, "unknown inputs ['y'], missing inputs ['x']"),
    ({"inputs": []}, '"inputs" must be a non-empty list'),
    ({"inputs": [tensor(["a"] * 4, [1, 4])]}, "input 'x': data does not hold FP32 values"),
    ({"inputs": [tensor([1.0] * 4, [1, -4])]}, "input 'x': shape must be a list of non-negative integers"),
    ({"inputs": [tensor([1.0] * 4, [1, 4])], "outputs": [{"name": "z"}]}, "unknown output 'z'"),
])
def test_bad_requests_get_400_in_the_protocol_error_shape(app: ServingApp, document: dict, message: str) -> None:
    status, _, body = infer(app, document)
    assert status == 400 and set(body) == {"error"}
    assert body["error"].startswith(message)


def test_datatype_mapping_covers_the_onnx_tensor_types() -> None:
    assert {oip.datatype(np.dtype(t)) for t in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16",
                                                  "uint32", "uint64", "float16", "float32", "float64", "O")} == {
        "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64",
        "BYTES"}
    words = np.array([["ab", "c"]], dtype=object)
    chunk = oip._binary_bytes(words)
    assert chunk == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"
    assert oip._from_binary("w", chunk, (1, 2), np.dtype(object)).tolist() == [["ab", "c"]]
