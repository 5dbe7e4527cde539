"""A web process loads what its first task message needs as it starts (slipway/wsgi.py), so that the first
rollback it answers does not pay for it, and it starts so with the broker down. What it loaded is frozen
out of the cycle collector's generations, so that requests' cyclic garbage is collected against what
requests keep, not against everything loaded (web memory under bench/soak.py)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOW = ("import gc, sys; loaded = 'kombu.transport.redis' in sys.modules; import slipway.wsgi; "
        "print(loaded, 'kombu.transport.redis' in sys.modules, gc.get_freeze_count(), len(gc.get_objects()))")


def started_web() -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {"PYTHONPATH": str(ROOT), "REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    started = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0, started.stderr[-3000:]
    return started.stdout.split()[-4:]


def test_a_web_process_loads_the_brokers_transport_as_it_starts_even_with_the_broker_down() -> None:
    assert started_web()[:2] == ["False", "True"]


def test_what_a_web_process_loaded_is_frozen_out_of_the_collectors_generations() -> None:
    frozen, collected = (int(n) for n in started_web()[2:])
    assert frozen > 50_000  # Django, DRF, numpy, the settings
    assert collected < frozen / 10  # what is left for the collector to scan: only what came after
