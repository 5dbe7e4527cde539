"""Every benchmark in bench/ runs at a smoke size, so that its imports and code paths keep working.

They print figures and gate on nothing here (timings on this busy machine would mean nothing): each
must exit 0 and end with its JSON line. Each runs on a throwaway database of this test slot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLOT = os.environ.get("SLIPWAY_TEST_SLOT", "0")
pytestmark = pytest.mark.slow

SMOKE = {
    "canaries.py": ["--canaries", "2", "--window", "3", "--timeout", "60"],
    "compression.py": ["--part", "digits", "--epochs", "1"],
    "faults.py": ["--drills", "1"],
    "llm.py": ["--steps", "5", "--kinds", "int4-rtn-b32,fp16", "--rounds", "2", "--prompts", "1", "--new-tokens", "4",
               "--large-layers", "1"],
    "monitoring.py": ["--requests", "30", "--predictions", "300", "--batch", "100"],
    "mttr.py": ["--timings", "test"],
    "pages.py": ["--requests", "2", "--versions", "150"],
    "rollback.py": ["--rate", "20", "--hold", "0.5", "--skip-image"],
    "scale.py": ["--builds", "4", "--clients", "2", "--rate", "600", "--workers", "1", "--web", "1",
                 "--rollbacks", "1"],
    "serving.py": ["--requests", "10", "--seconds", "1", "--no-minilm"],
    "uploads.py": ["--mib", "8", "--rounds", "1"],
}
# Not scripts of their own: helpers the benchmarks above import or start.
HELPERS = {"__init__.py", "throwaway.py", "scale_figures.py", "scale_probe.py", "scale_services.py"}
# Run against a deployment that is already up (--url, --data-dir): see its docstring.
AGAINST_A_RUNNING_SLIPWAY = {"soak.py"}


def test_every_benchmark_has_a_smoke_size() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")}
    assert scripts - HELPERS - AGAINST_A_RUNNING_SLIPWAY == set(SMOKE)


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_benchmark_runs_at_a_smoke_size(script: str) -> None:
    name = script.removesuffix(".py")
    # As from a shell: none of the test settings' variables (tests/settings.py sets them for its workers).
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")
           and not k.startswith(("SLIPWAY_", "AWS_", "DJANGO_"))}
    env |= {"BENCH_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/slipway_bench_smoke_{SLOT}_{name}",
            "PYTHONPATH": str(ROOT)}
    bench = subprocess.Popen([sys.executable, str(ROOT / "bench" / script), *SMOKE[script]], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = bench.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the benchmark stops what it started (HAProxy, servers, Prometheus)
        stdout, stderr = bench.communicate(timeout=60)
        pytest.fail(f"{script} took longer than 600 s\n{stdout[-3000:]}{stderr[-3000:]}")
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert isinstance(json.loads(last), dict), last
    print(stdout[-1500:])  # the figures, for whoever reads the log (pytest -s)
