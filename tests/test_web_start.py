"""A web process loads what its first task message needs as it starts (slipway/wsgi.py), so that the first
rollback it answers does not pay for it, and it starts so with the broker down."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOW = ("import sys; loaded = 'kombu.transport.redis' in sys.modules; import slipway.wsgi; "
        "print(loaded, 'kombu.transport.redis' in sys.modules)")


def test_a_web_process_loads_the_brokers_transport_as_it_starts_even_with_the_broker_down() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {"PYTHONPATH": str(ROOT), "REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    started = subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0, started.stderr[-3000:]
    assert started.stdout.split()[-2:] == ["False", "True"]
