"""One task at a time per GPU: holders of the same device's lock take turns; other devices and the CPU
do not wait. (Threads open the lock file separately, so they contend exactly as worker processes do.)"""

import threading
import time

from workers.gpu import gpu_slot

HOLD_S = 0.5


def run_two(first: str, second: str, lock_dir) -> float:
    """Seconds the second holder waited for the first (which holds its slot HOLD_S)."""
    entered = threading.Event()
    waited = []

    def hold() -> None:
        with gpu_slot(first, lock_dir):
            entered.set()
            time.sleep(HOLD_S)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait()
    start = time.monotonic()
    with gpu_slot(second, lock_dir):
        waited.append(time.monotonic() - start)
    holder.join()
    return waited[0]


def test_stages_on_one_gpu_take_turns(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert run_two("cuda:0", "cuda:0", tmp_path) >= HOLD_S * 0.8
    assert run_two("cuda:0", "cuda:1", tmp_path) < HOLD_S * 0.5
    assert run_two("cpu", "cpu", tmp_path) < HOLD_S * 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-cuda0.lock", "all-cuda1.lock"]
