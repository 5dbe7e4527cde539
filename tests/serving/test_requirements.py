"""The release image installs serving/requirements.txt and nothing else (--no-deps): every package the
model server imports, the language-model runtime's included, must be on that list."""

import ast
import sys
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shipping.image import REQUIREMENTS, SERVING_DIR


def imported_packages() -> set[str]:
    """Top-level names of the third-party modules that serving/ imports."""
    names = set()
    for path in SERVING_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "serving"}


def pinned() -> dict[str, str]:
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(r.name): str(r.specifier) for r in requirements}


def test_every_package_the_model_server_imports_is_pinned_for_the_image() -> None:
    distributions = packages_distributions()
    needed = {name: {canonicalize_name(d) for d in distributions[name]} for name in imported_packages()}
    assert {"numpy", "onnxruntime", "prometheus_client", "gunicorn", "tokenizers", "jinja2"} <= set(needed)
    missing = {name: sorted(dists) for name, dists in needed.items() if not dists & set(pinned())}
    assert missing == {}


def test_every_requirement_is_pinned_to_one_version() -> None:
    assert all(spec.startswith("==") and "," not in spec for spec in pinned().values())
    assert {"tokenizers", "jinja2", "markupsafe"} <= set(pinned())

