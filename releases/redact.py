"""Errors shown to people name an artifact by its sha256, never by where a machine keeps it.

Messages from libraries (the ONNX checker, ONNX Runtime, numpy) quote the file they read; those files
live in the artifact store, a worker's cache or its work folders. A crashed stage's traceback quotes
where the code is installed. Every reason the state machine records, and every line of a stage's log,
goes through `without_paths`.
"""

import os
import re
import sysconfig
import tempfile

from django.conf import settings

OBJECT_PATH = re.compile(r"(?:/[^\s'\"]*)?/objects/[0-9a-f]{2}/([0-9a-f]{64})(?:\.[\w.]+)?")
PATH_START = r"(?<![\w.~-])"  # a root only where a path starts, not inside a longer one


def _longest_first(roots: set[str]) -> list[str]:
    roots |= {os.path.realpath(r) for r in roots if r}
    return sorted((r.rstrip("/") for r in roots if r and r != "/"), key=len, reverse=True)


def _data_roots() -> list[str]:
    """Where this machine keeps data: a path below one is cut to its file name."""
    return _longest_first({str(settings.DATA_DIR), str(settings.ARTIFACT_DIR), str(settings.SLIPWAY_CACHE_DIR),
                           str(settings.SLIPWAY_SERVING_DIR), tempfile.gettempdir()})


def _code_roots() -> list[str]:
    """Where the code is installed: a path below one is named from there down (onnx/__init__.py)."""
    paths = sysconfig.get_paths()
    return _longest_first({paths["purelib"], paths["platlib"], paths["stdlib"], paths["platstdlib"],
                           str(settings.BASE_DIR)})


def without_paths(text: str) -> str:
    """`text` with stored objects named `artifact sha256:<hex>`, other data paths cut to their file name and
    paths of installed code to the part below where it is installed."""
    if not text:
        return text
    text = OBJECT_PATH.sub(lambda m: f"artifact sha256:{m[1]}", text)
    for root in _data_roots():
        text = re.sub(PATH_START + re.escape(root) + r"/(?:[^\s'\":,]*/)?([^\s/'\":,]*)", r"\1", text)
    for root in _code_roots():
        text = re.sub(PATH_START + re.escape(root) + "/", "", text)
    return text
