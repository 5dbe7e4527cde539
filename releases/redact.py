"""Errors shown to people name an artifact by its sha256, never by where a machine keeps it.

Messages from libraries (the ONNX checker, ONNX Runtime, numpy) quote the file they read; those files
live in the artifact store, a worker's cache or its work folders. Every reason the state machine
records goes through `without_paths`.
"""

import re
import tempfile

from django.conf import settings

OBJECT_PATH = re.compile(r"(?:/[^\s'\"]*)?/objects/[0-9a-f]{2}/([0-9a-f]{64})(?:\.[\w.]+)?")


def _roots() -> list[str]:
    roots = {str(settings.DATA_DIR), str(settings.ARTIFACT_DIR), str(settings.SLIPWAY_CACHE_DIR),
             str(settings.SLIPWAY_SERVING_DIR), tempfile.gettempdir()}
    return sorted((r.rstrip("/") for r in roots if r and r != "/"), key=len, reverse=True)


def without_paths(text: str) -> str:
    """`text` with stored objects named `artifact sha256:<hex>` and other server paths cut to their file name."""
    if not text:
        return text
    text = OBJECT_PATH.sub(lambda m: f"artifact sha256:{m[1]}", text)
    for root in _roots():
        text = re.sub(re.escape(root) + r"/(?:[^\s'\":,]*/)?([^\s/'\":,]*)", r"\1", text)
    return text
