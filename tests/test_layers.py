"""The layers, lowest first: serving < shipping < fleet < releases < workers, monitoring, webhooks. A module
never imports one of a higher layer (at the top of a file or inside a function), so there is no cycle between
layers (releases and workers above all). fleet (the workers' own records) sits below releases so that the
pipeline can route a stage by which workers are there; its page lives with the other pages, in releases."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"serving": 0, "shipping": 1, "fleet": 2, "releases": 3, "workers": 4, "monitoring": 4, "webhooks": 4}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_package_imports_a_higher_layer(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in imported_packages(path):
            if imported in LAYERS and LAYERS[imported] > LAYERS[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


# Among the peers at the top, webhooks stands apart: it reads the audit trail and imports neither workers
# nor monitoring, nor do they import it. Workers and monitoring are not ordered: they meet over the shadow
# run (the deploy stage asks monitoring's verdict before a canary; monitoring's `shadow` command starts
# the shadow's server through workers), a cycle that only moving that command's start behind a task
# would break.
APART = {"webhooks": {"workers", "monitoring"}, "workers": {"webhooks"}, "monitoring": {"webhooks"}}


@pytest.mark.parametrize("package", sorted(APART))
def test_webhooks_and_its_peers_do_not_import_each_other(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)} imports {imported}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for imported in sorted(imported_packages(path) & APART[package])]
    assert wrong == []
