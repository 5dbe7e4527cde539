"""What this machine has: CPUs, memory, and the CUDA devices torch sees (none without torch or CUDA)."""

import os
from importlib import metadata


def cuda_devices() -> list[dict]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({"index": index, "name": props.name, "memory_bytes": int(props.total_memory)})
    return devices


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def slipway_version() -> str:
    try:
        return metadata.version("slipway")
    except metadata.PackageNotFoundError:
        return "unknown"
