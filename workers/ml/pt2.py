"""Load torch.export archives (.pt2) without running pickled code.

``torch.export.load`` is documented as unsafe for untrusted files: it unpickles tensors flagged
``use_pickle``, "opaque" and TorchScript constants, legacy-format state dicts, and falls back to
``torch.load(weights_only=False)`` for the sample inputs; archives may also carry compiled
AOTInductor libraries. This module reads the archive's own JSON configs first and refuses every
one of those, then loads with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` so that any remaining
``torch.load`` can only rebuild tensors and plain containers.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.export.pt2_archive import constants as pt2

_FORBIDDEN_DIRS = (pt2.AOTINDUCTOR_DIR, pt2.EXECUTORCH_DIR, pt2.MTIA_DIR, pt2.XL_MODEL_WEIGHTS_DIR)


class UnsafeArchive(ValueError):
    """The archive holds something that would have to be unpickled or executed to load it."""


def load_exported_program(path: str | Path) -> torch.export.ExportedProgram:
    """Check the archive at ``path`` and load its exported program; raise :class:`UnsafeArchive`."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise UnsafeArchive(f"{path.name!r} is not a torch.export archive (a zip file)")
    with zipfile.ZipFile(path) as archive:
        _check(archive)
    with _weights_only_loads():
        try:
            return torch.export.load(path)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UnsafeArchive(f"torch.export.load refused the archive safely: {first[:300]}") from exc


def _check(archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise UnsafeArchive("not a torch.export archive: expected one top-level folder")
    root = roots.pop() + "/"
    inner = [name[len(root) :] for name in names]
    if pt2.ARCHIVE_VERSION_PATH not in inner:
        raise UnsafeArchive("a legacy-format archive (it would be unpickled): re-save with torch.export.save")
    for name in inner:
        if name.startswith(_FORBIDDEN_DIRS):
            raise UnsafeArchive(f"the archive carries compiled code or pickles ({name}); not loaded")
    models = [n[len(pt2.MODELS_DIR) : -len(".json")] for n in inner if n.startswith(pt2.MODELS_DIR)]
    if not models:
        raise UnsafeArchive("the archive holds no exported program")
    for model in models:
        for config_format, what in (
            (pt2.WEIGHTS_CONFIG_FILENAME_FORMAT, "weight"),
            (pt2.CONSTANTS_CONFIG_FILENAME_FORMAT, "constant"),
        ):
            config_name = config_format.format(model)
            if config_name not in inner:
                raise UnsafeArchive(f"{config_name} is missing (a legacy, pickled layout)")
            config = json.loads(archive.read(root + config_name))
            for entry_name, entry in config.get("config", {}).items():
                pickled = entry.get("use_pickle", True)
                plain = what == "weight" or entry.get("path_name", "").startswith(pt2.TENSOR_CONSTANT_FILENAME_PREFIX)
                if pickled or not plain:
                    raise UnsafeArchive(f"{what} {entry_name!r} is stored as a pickled object; export plain tensors")


@contextmanager
def _weights_only_loads() -> Iterator[None]:
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous
