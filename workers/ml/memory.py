"""Peak memory of loading and running a model, measured in a fresh process per model.

Measured inside a long-lived worker the figure is meaningless: memory freed by the previous
model is reused by the next one, so the resident size does not grow and the page showed
"0 bytes". A fresh process that has imported ONNX Runtime and loaded the inputs is the baseline;
its high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` where Linux allows it)
after creating the session and running one batch, minus that baseline, is the model's peak:
weights, arena and the run's buffers, as a model server would hold them.

One probe process imports ONNX Runtime and loads the inputs once, then forks a child per model
(before any session exists, so no thread pool is forked), which is about as fresh as a new process
and costs milliseconds instead of an interpreter start each.

Run as ``python -m workers.ml.memory FEEDS.npz DEVICE THREADS MODEL...``; it prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

Feeds = dict[str, np.ndarray]

_ROOT = Path(__file__).resolve().parents[2]
_STATUS = Path("/proc/self/status")
TIMEOUT_S = 300


class MemoryProbeError(RuntimeError):
    """The probe process failed; the message holds its last words."""


def peak_memory(model_path: str | Path, feeds: Feeds, device: str = "cpu", threads: int = 1) -> int:
    """Bytes of peak memory added by loading the model and running ``feeds`` once (see the module)."""
    return peak_memories([model_path], feeds, device, threads)[0]


def peak_memories(model_paths: list[str | Path] | list[Path], feeds: Feeds, device: str = "cpu",
                  threads: int = 1) -> list[int]:
    """:func:`peak_memory` of each model, on the same ``feeds`` (fed to every model as they are)."""
    with tempfile.TemporaryDirectory(prefix="slipway-memory-") as scratch:
        data = Path(scratch) / "feeds.npz"
        arrays: dict[str, np.ndarray] = {f"input:{name}": array for name, array in feeds.items()}
        np.savez(data, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(
            [sys.executable, "-m", "workers.ml.memory", str(data), device, str(threads), *map(str, model_paths)],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=_ROOT, check=False,
        )
    if done.returncode != 0 or not done.stdout.strip():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise MemoryProbeError(f"the memory probe failed: {last}")
    peaks = json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"]
    failed = [str(path) for path, peak in zip(model_paths, peaks, strict=True) if peak is None]
    if failed:
        raise MemoryProbeError(f"the memory probe failed on {', '.join(Path(f).name for f in failed)}")
    return [int(peak) for peak in peaks]


def _kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"{field} not in {_STATUS}")


def _reset_high_water_mark() -> None:
    with contextlib.suppress(OSError):  # not allowed: the peak then also counts the imports' own peak
        Path("/proc/self/clear_refs").write_text("5")


def _probe(model_path: str, feeds: Feeds, device: str, threads: int) -> int:
    from workers.ml.runtime import make_session

    _reset_high_water_mark()
    baseline = _kib("VmRSS")
    session = make_session(model_path, device, threads=threads)
    session.run(None, feeds)
    return max(0, _kib("VmHWM") - baseline) * 1024


def _probe_in_child(model_path: str, feeds: Feeds, device: str, threads: int) -> int | None:
    """:func:`_probe` in a forked child; None when the child failed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, and leave without running the parent's cleanup
        os.close(read)
        try:
            os.write(write, str(_probe(model_path, feeds, device, threads)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return int(text) if text else None


def main(arguments: list[str]) -> None:
    import onnxruntime  # noqa: F401 - part of the baseline, not of any model's peak

    data, device, threads, *models = arguments
    with np.load(data, allow_pickle=False) as npz:
        feeds = {name.removeprefix("input:"): npz[name] for name in npz.files}
    print(json.dumps({"peak_bytes": [_probe_in_child(model, feeds, device, int(threads)) for model in models]}))


if __name__ == "__main__":
    main(sys.argv[1:])
