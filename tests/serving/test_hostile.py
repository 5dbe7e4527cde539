"""Hostile bodies against a real model server: each a clear error, the server healthy, memory flat."""

import gzip
import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from serving import oip
from tests.serving.conftest import serving_process

INFER = "/v2/models/linear/infer"
MAX_BODY = 4 * 1024 * 1024
X = np.array([[1, 2, 3, 4]], dtype=np.float32)


def bomb(shape: tuple[int, ...] = (1 << 16, 1024)) -> bytes:
    """An .npz of float32 zeros, 256 MiB unpacked and ~1.1 MB packed, written without holding it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("x.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
        zeros = bytes(1 << 22)
        for _ in range(int(np.prod(shape)) * 4 // len(zeros)):
            member.write(zeros)
    return buffer.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An .npy body whose header declares ``shape`` but that holds 16 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(16)


def tensor(shape: list[int], data: list, datatype: str = "FP32", name: str = "x") -> dict:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


LONG_JSON = json.dumps(tensor([1, 4], [1.0] * (1 << 18))).encode()
SHORT_BINARY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}]}).encode()
BAD = [  # (path, body, headers, status, error starts with)
    (INFER, tensor([1, 4], [1.0] * 4, "FP64"), {}, 400, "input 'x' has datatype 'FP64'"),
    (INFER, tensor([1, 3], [1.0] * 3), {}, 400, "input 'x' has size 3 on axis 1"),
    (INFER, tensor([1, 4], [1.0] * 4) | {"outputs": [{"name": "z"}]}, {}, 400, "unknown output 'z'"),
    (INFER, {"inputs": []}, {}, 400, '"inputs" must be a non-empty list'),
    (INFER, tensor([1, 4], [1.0] * 4, name="y"), {}, 400, "unknown inputs ['y'], missing inputs ['x']"),
    (INFER, b"{not json", {}, 400, "the inference request is not valid JSON"),
    (INFER, b"\xff\xfe" * 10, {}, 400, "the inference request is not valid JSON"),
    (INFER, tensor([5000, 4], [1.0] * 4), {}, 413, "input 'x' has a batch of 5000 rows; the limit is 1024"),
    (INFER, tensor([1024, 1 << 20], [1.0]), {}, 413, "the request holds more than 16777216 elements"),
    (INFER, LONG_JSON, {}, 413, f"a JSON body of {len(LONG_JSON)} bytes is over the limit of 1048576 bytes"),
    (INFER, b"{" + b" " * MAX_BODY + b"}", {}, 413, f"a body of {MAX_BODY + 2} bytes is over the limit of {MAX_BODY}"),
    (INFER, gzip.compress(json.dumps(tensor([1, 4], [1.0] * 4)).encode()), {"Content-Encoding": "gzip"}, 415,
     "Content-Encoding 'gzip' is not accepted"),
    (INFER, SHORT_BINARY + bytes(8), {oip.HEADER_LENGTH: str(len(SHORT_BINARY))}, 400,
     "input 'x': binary_data_size 16 is not within the 8 bytes"),
    ("/v1/predict", "bomb", {"Content-Type": "application/x-npz"}, 413, "the .npz body would unpack to 268435"),
    ("/v1/predict", npy_header_only((1 << 30, 4)), {"Content-Type": "application/x-npy"}, 413,
     "input 'the .npy body' has a batch of 1073741824 rows"),
    ("/v1/predict", npy_header_only((4, 4)), {"Content-Type": "application/x-npy"}, 400,
     "the .npy body: the header declares [4, 4] float32, more data than the body holds"),
    ("/v1/predict", b"PK\x03\x04garbage", {"Content-Type": "application/x-npz"}, 400,
     "body is not a readable .npz archive"),
]


@pytest.fixture
def server(linear_path: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    options = ("--max-body-bytes", str(MAX_BODY), "--max-json-bytes", str(1 << 20))
    with serving_process(linear_path, tmp_path, "linear", *options) as started:
        yield started


def rss_bytes(pid: int) -> int:
    """Resident memory of the server: the gunicorn master and its worker."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def send(session: requests.Session, url: str, path: str, body: object, headers: dict) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return session.post(url + path, data=data, headers={"Content-Type": "application/json", **headers}, timeout=30)


def test_every_bad_body_is_a_clear_error_then_a_good_request_works(server: tuple[subprocess.Popen, str]) -> None:
    process, url = server
    packed = bomb()
    assert len(packed) < 1_500_000  # like the security review's 1.5 MB body
    with requests.Session() as session:
        send(session, url, INFER, oip.request_document({"x": X}), {})
        before = rss_bytes(process.pid)
        for _ in range(3):
            for path, body, headers, status, message in BAD:
                answer = send(session, url, path, packed if body == "bomb" else body, headers)
                document = answer.json()
                assert (answer.status_code, set(document)) == (status, {"error"}), (message, document)
                assert document["error"].startswith(message), document["error"]
        after = rss_bytes(process.pid)
        good = send(session, url, INFER, oip.request_document({"x": X}), {})
        assert good.status_code == 200
        assert oip.response_outputs(good.json())["scores"].tolist() == [[5.5, 5.5, 7.0]]
        assert session.get(url + "/v2/health/ready", timeout=5).status_code == 200
    assert process.poll() is None
    print(f"server RSS before {before / 2**20:.1f} MiB, after {len(BAD) * 3} hostile bodies {after / 2**20:.1f} MiB")
    assert after - before < 64 * 2**20, (before, after)
