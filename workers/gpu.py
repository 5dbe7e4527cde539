"""One task at a time per GPU: a stage that runs on a CUDA device holds that device's lock on this
machine for as long as it runs, whatever the worker's concurrency (compose also runs one gpu worker,
-c 1, per GPU). Stages on the CPU take no lock."""

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def lock_path(device: str, lock_dir: Path) -> Path:
    """Workers that see different GPUs as cuda:0 (CUDA_VISIBLE_DEVICES) lock different files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_") or "none"
    return lock_dir / f"{visible}-{device.replace(':', '')}.lock"


@contextmanager
def gpu_slot(device: str, lock_dir: Path | None = None) -> Iterator[None]:
    if not device.startswith("cuda"):
        yield
        return
    folder = lock_dir or Path(tempfile.gettempdir()) / "slipway-gpu"
    folder.mkdir(parents=True, exist_ok=True)
    with open(lock_path(device, folder), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if the process dies
        yield
