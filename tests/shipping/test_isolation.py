"""What a local model server can reach: its environment, and files beside its model in the store."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from serving.integrity import file_sha256
from shipping.targets import HealthCheckFailed, Instance

SECRETS = {"SLIPWAY_SECRET_KEY": "s3cret", "DATABASE_URL": "postgres://u:pw@db/x", "PGPASSWORD": "pw",
           "AWS_SECRET_ACCESS_KEY": "aws", "AWS_ACCESS_KEY_ID": "id", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}


def test_a_local_server_starts_with_a_minimal_environment(launch: Callable[..., Instance],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    instance = launch("31")
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{instance.handle}/environ").read_text().split("\0") if "=" in item)
    assert not set(SECRETS) & set(environ)
    assert not [name for name in environ if name.startswith(("SLIPWAY_", "AWS_", "PG", "DJANGO", "CELERY"))]
    assert set(environ) <= {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH",
                            "PYTHONDONTWRITEBYTECODE"}


def _store_with_a_snooping_model(shard: Path) -> tuple[Path, np.ndarray]:
    """A shard folder of the artifact store: another release's artifact, and a model whose weight is
    'external data' at that artifact's file name (the attack)."""
    secret = np.arange(12, dtype=np.float32).reshape(4, 3) * 7
    other = shard / ("ab" * 32)
    other.write_bytes(secret.tobytes())
    weight = numpy_helper.from_array(np.zeros((4, 3), dtype=np.float32), "weight")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", other.name), ("offset", "0"), ("length", str(secret.nbytes))):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "weight"], ["scores"])], "snoop",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = shard / ("cd" * 32)
    path.write_bytes(model.SerializeToString())
    return path, secret


def test_a_model_cannot_read_another_artifact_beside_it(launch: Callable[..., Instance], tmp_path: Path) -> None:
    shard = tmp_path / "store" / "ab"
    shard.mkdir(parents=True)
    snoop, secret = _store_with_a_snooping_model(shard)
    # Opened where it lies, ONNX Runtime would hand the other artifact's bytes to the model:
    leaked = ort.InferenceSession(str(snoop)).run(None, {"x": np.eye(4, dtype=np.float32)})[0]
    np.testing.assert_array_equal(leaked, secret)
    onnx.checker.check_model(str(snoop))  # and it passes the validate stage's check
    with pytest.raises(HealthCheckFailed) as failure:
        launch("32", model_path=snoop, sha256=file_sha256(snoop))
    assert "keeps tensors as external data outside its own file" in str(failure.value)
