"""ONNX Runtime sessions, device choice and model file facts shared by the ML steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

ORT_TO_NUMPY: dict[str, np.dtype] = {
    f"tensor({name})": np.dtype(dtype)
    for name, dtype in {
        "float": np.float32,
        "double": np.float64,
        "float16": np.float16,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
    }.items()
}


def providers_for(device: str) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for ``device`` ("cpu" or "cuda[:N]"), always ending with the CPU.

    A CUDA device falls back to the CPU alone when this ONNX Runtime build has no GPU provider.
    """
    providers: list[str | tuple[str, dict[str, str]]] = []
    if device.startswith("cuda"):
        device_id = device.partition(":")[2] or "0"
        available = ort.get_available_providers()
        providers += [(p, {"device_id": device_id}) for p in _GPU_PROVIDERS if p in available]
    providers.append("CPUExecutionProvider")
    return providers


def make_session(
    path: str | Path, device: str = "cpu", *, threads: int = 0, spinning: bool = True
) -> ort.InferenceSession:
    """An inference session for the model at ``path`` on ``device`` (CPU fallback).

    ``threads`` sets intra-op threads (0: ONNX Runtime's default, one per physical core).
    ``spinning=False`` stops idle worker threads from busy-waiting after each run, which would
    otherwise take CPU from whatever runs next (another model being timed, for instance).
    """
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers_for(device))


def session_device(session: ort.InferenceSession, requested: str) -> str:
    """The device a session really runs on: ``requested`` if a GPU provider is active, else cpu."""
    return requested if set(_GPU_PROVIDERS) & set(session.get_providers()) else "cpu"


def detect_device() -> str:
    """ "cuda:0" when torch sees a GPU and ONNX Runtime has its CUDA provider, else "cpu"."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "cpu"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_proto(path: str | Path) -> onnx.ModelProto:
    """The model's graph without its external weights (enough to read nodes and attributes)."""
    return onnx.load(str(path), load_external_data=False)


def model_size_bytes(path: str | Path) -> int:
    """Bytes on disk of an ONNX model, counting its external data files once each."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = {
        ExternalDataInfo(tensor).location for tensor in _all_tensors(model.graph) if uses_external_data(tensor)
    }
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in locations)


def _all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                tensors.append(attr.t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                tensors += _all_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    tensors += _all_tensors(sub)
    return tensors
