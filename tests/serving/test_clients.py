"""Real Open Inference Protocol clients (tritonclient, the KServe SDK) against a served model.

Each gets the numbers ONNX Runtime gives on the same file and inputs, with JSON tensors and with
the binary tensor data extension. ``infer_with_clients`` is reused through the proxy
(tests/shipping/test_proxy.py).
"""

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from tests.serving.conftest import serving_process

A = np.array([[0.5, 1.5], [-2.0, 3.25], [1e-3, 7.0]], dtype=np.float32)
B = np.array([[2, 3], [-4, 5], [0, 1]], dtype=np.int64)


def onnx_runtime(model: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def triton_infer(address: str, model: str, inputs: dict[str, np.ndarray], output: str,
                 binary: bool) -> np.ndarray:
    client = triton.InferenceServerClient(url=address, connection_timeout=10, network_timeout=10)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
        metadata = client.get_model_metadata(model)
        datatypes = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
        tensors = []
        for name, array in inputs.items():
            tensor = triton.InferInput(name, list(array.shape), datatypes[name])
            tensor.set_data_from_numpy(array, binary_data=binary)
            tensors.append(tensor)
        result = client.infer(model, tensors, request_id="triton-1",
                              outputs=[triton.InferRequestedOutput(output, binary_data=binary)])
        assert result.get_response()["id"] == "triton-1"
        return result.as_numpy(output)
    finally:
        client.close()


def kserve_infer(base_url: str, model: str, inputs: dict[str, np.ndarray], output: str, binary: bool) -> np.ndarray:
    datatypes = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}

    async def run() -> np.ndarray:
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=10, retries=0)) as client:
            assert await client.is_model_ready(base_url, model)
            tensors = []
            for name, array in inputs.items():
                tensor = InferInput(name=name, shape=list(array.shape), datatype=datatypes[array.dtype])
                tensor.set_data_from_numpy(array, binary_data=binary)
                tensors.append(tensor)
            request = InferRequest(model_name=model, infer_inputs=tensors, request_id="kserve-1")
            response = await client.infer(base_url, request, model_name=model)
            assert response.id == "kserve-1"
            [answer] = [tensor for tensor in response.outputs if tensor.name == output]
            return answer.as_numpy()

    return asyncio.run(run())


def infer_with_clients(base_url: str, model: str, model_file: Path, inputs: dict[str, np.ndarray],
                       output: str) -> None:
    """Both clients, JSON and binary, must give ONNX Runtime's numbers."""
    expected = onnx_runtime(model_file, inputs)[output]
    for binary in (False, True):
        got = triton_infer(base_url.removeprefix("http://"), model, inputs, output, binary)
        np.testing.assert_array_equal(got, expected, err_msg=f"tritonclient, binary={binary}")
        got = kserve_infer(base_url, model, inputs, output, binary)
        np.testing.assert_array_equal(got, expected, err_msg=f"kserve, binary={binary}")


@pytest.fixture
def two_server(two_input_path: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    with serving_process(two_input_path, tmp_path, "two") as started:
        yield started


def test_tritonclient_and_kserve_get_onnx_runtimes_numbers(two_server: tuple[subprocess.Popen, str],
                                                           two_input_path: Path) -> None:
    _, url = two_server
    infer_with_clients(url, "two", two_input_path, {"a": A, "b": B}, "total")


def test_client_errors_carry_the_servers_message(two_server: tuple[subprocess.Popen, str]) -> None:
    _, url = two_server
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    tensor = triton.InferInput("a", [3, 2], "FP64")
    tensor.set_data_from_numpy(A.astype(np.float64))
    other = triton.InferInput("b", [3, 2], "INT64")
    other.set_data_from_numpy(B)
    with pytest.raises(triton.InferenceServerException, match="input 'a' has datatype 'FP64'; the model expects FP32"):
        client.infer("two", [tensor, other])
    with pytest.raises(triton.InferenceServerException, match="unknown model 'other'"):
        client.get_model_metadata("other")
    client.close()
