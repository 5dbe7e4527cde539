from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.workers.ml.onnx_builders import mlp_graph
from workers.ml import runtime
from workers.ml.memory import MemoryProbeError, peak_memories, peak_memory
from workers.ml.runtime import detect_device, make_session, model_size_bytes, providers_for


def test_cpu_only_build_falls_back_to_the_cpu() -> None:
    assert "CUDAExecutionProvider" not in ort.get_available_providers()
    assert providers_for("cuda:1") == ["CPUExecutionProvider"]
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert detect_device() == "cpu"


def test_gpu_providers_come_first_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runtime.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert providers_for("cuda:1") == [("CUDAExecutionProvider", {"device_id": "1"}), "CPUExecutionProvider"]
    assert providers_for("cuda")[0] == ("CUDAExecutionProvider", {"device_id": "0"})


def test_size_counts_external_data(tmp_path: Path) -> None:
    graph = mlp_graph([np.ones((256, 256), np.float32)], [np.zeros(256, np.float32)])
    model = onnx.helper.make_model(graph)
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    files = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert model_size_bytes(tmp_path / "m.onnx") == files > 256 * 256 * 4
    session = make_session(tmp_path / "m.onnx", "cpu", threads=1)
    assert session.run(None, {"x": np.ones((1, 256), np.float32)})[0][0, 0] == 256


def test_peak_memory_grows_with_the_model_and_is_measured_apart_from_this_process(tmp_path: Path) -> None:
    def saved(width: int) -> Path:
        graph = mlp_graph([np.ones((64, width), np.float32), np.ones((width, 4), np.float32)],
                          [np.zeros(width, np.float32), np.zeros(4, np.float32)])
        path = tmp_path / f"mlp{width}.onnx"
        onnx.save(onnx.helper.make_model(graph), str(path))
        return path

    feeds = {"x": np.ones((8, 64), np.float32)}
    small, large = peak_memories([saved(16), saved(65536)], feeds)  # 16 MB of weights
    assert peak_memory(saved(16), feeds) == pytest.approx(small, rel=0.5)
    assert 0 < small < 32 * 1024 * 1024  # ONNX Runtime itself takes a few MB per session
    assert large > small + 16 * 1024 * 1024
    with pytest.raises(MemoryProbeError, match=r"the memory probe failed on missing\.onnx"):
        peak_memory(tmp_path / "missing.onnx", feeds)
