"""README documents every environment variable the settings read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_variable_is_in_the_readme():
    read = set(re.findall(r'env\.\w+\("([A-Z_]+)"', (ROOT / "slipway" / "settings.py").read_text()))
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "README.md").read_text(), re.MULTILINE))
    assert read - documented == set()
    assert documented - read == set()
