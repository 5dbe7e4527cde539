"""`pip install .` into a fresh virtual environment outside the repository gives a working `slipway`
command and a Django project that passes `manage.py check` and serves its pages and static files: every
app, template and static file is packaged, nothing is found only because the tests run from the
repository folder.

Cheap by design: the wheel is built from a copy of what pyproject.toml packages, installed without
its dependencies (--no-deps), and the dependencies come from this test run's environment through a
.pth line placed after the fresh environment's own site-packages (as --system-site-packages would
give them). Every import of a Slipway module is then checked to come from the fresh environment."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run by the installed copy: the sign-in page, then htmx from its static files (status and size).
SERVE_A_PAGE = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slipway.settings")
django.setup()
from django.test import Client
client = Client(SERVER_NAME="localhost")
page = client.get("/login/")
print(f"{page.status_code}:{page.content.hex()}")
script = client.get("/static/vendor/htmx/htmx.min.js")
print(f"{script.status_code}:{len(b''.join(script.streaming_content))}")
"""


def packaged_sources(into: Path) -> None:
    """pyproject.toml, the README it names and the packages it includes: what `pip install .` reads."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shutil.copy2(ROOT / "pyproject.toml", into / "pyproject.toml")
    shutil.copy2(ROOT / project["project"]["readme"], into / project["project"]["readme"])
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        for package in ROOT.glob(pattern.rstrip("*")):
            if (package / "__init__.py").exists():
                shutil.copytree(package, into / package.name, ignore=shutil.ignore_patterns("__pycache__"))


def test_pip_install_outside_the_repository_runs_slipway_and_manage_check(tmp_path: Path) -> None:
    source, venv, elsewhere = tmp_path / "source", tmp_path / "venv", tmp_path / "elsewhere"
    source.mkdir()
    elsewhere.mkdir()
    packaged_sources(source)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")  # the dependencies, after it
    unset = ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")  # the embedded defaults
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("SLIPWAY_")} | {
        "SLIPWAY_DATA_DIR": str(tmp_path / "data"), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              str(source)], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr

    where = subprocess.run([python, "-c", "import slipway, releases, workers, shipping, serving, monitoring, "
                            "webhooks, fleet; print('\\n'.join(m.__file__ for m in (slipway, releases, workers, "
                            "shipping, serving, monitoring, webhooks, fleet)))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert len(where) == 8 and all(path.startswith(site) for path in where), where

    helped = subprocess.run([venv / "bin" / "slipway", "--help"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert all(command in helped.stdout for command in ("push", "approve", "rollback", "status"))

    shutil.copy2(ROOT / "manage.py", elsewhere / "manage.py")  # the project's manage.py, beside no package
    checked = subprocess.run([python, "manage.py", "check"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout, checked.stdout + checked.stderr

    # The pages and their static files come from the installed package: collected as the image does, then
    # a page rendered and a vendored file served (WhiteNoise) by the installed copy.
    collected = subprocess.run([python, "manage.py", "collectstatic", "--noinput"], cwd=elsewhere, env=env,
                               capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    served = subprocess.run([python, "-c", SERVE_A_PAGE], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert served.returncode == 0, served.stdout + served.stderr
    page, script = served.stdout.split()
    assert page.startswith("200:") and "<h1>Log in</h1>" in bytes.fromhex(page[4:]).decode(), page
    assert script == f"200:{len((ROOT / 'slipway/static/vendor/htmx/htmx.min.js').read_bytes())}"
