from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from workers.ml.pt2 import UnsafeArchive, load_exported_program

MARKER = Path("/tmp/slipway-pt2-test-marker")


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {MARKER}",))


def export(path: Path) -> Path:
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    program = torch.export.export(module, (torch.randn(2, 4),))
    torch.export.save(program, str(path))
    return path


def rewrite(source: Path, target: Path, change: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            suffix = item.filename.split("/", 1)[1]
            new.writestr(item, change.get(suffix, old.read(item.filename)))
        for suffix, data in change.items():
            if suffix not in {i.filename.split("/", 1)[1] for i in old.infolist()}:
                new.writestr(old.namelist()[0].split("/")[0] + "/" + suffix, data)
    return target


def test_a_plain_archive_loads(tmp_path: Path) -> None:
    program = load_exported_program(export(tmp_path / "m.pt2"))
    assert program.module()(torch.ones(2, 4)).shape == (2, 3)


def test_pickled_weights_are_refused_before_loading(tmp_path: Path) -> None:
    source = export(tmp_path / "m.pt2")
    with zipfile.ZipFile(source) as archive:
        name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(name))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    bad = rewrite(source, tmp_path / "bad.pt2", {"data/weights/model_weights_config.json": json.dumps(config).encode()})
    with pytest.raises(UnsafeArchive, match=f"weight '{first}' is stored as a pickled object"):
        load_exported_program(bad)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_sample_inputs_never_run(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    source = export(tmp_path / "m.pt2")
    bad = rewrite(source, tmp_path / "bad.pt2", {"data/sample_inputs/model.pt": pickle.dumps(_Payload())})
    with pytest.raises(UnsafeArchive, match="refused the archive safely"):
        load_exported_program(bad)
    assert not MARKER.exists()


def test_compiled_code_and_other_files_are_refused(tmp_path: Path) -> None:
    source = export(tmp_path / "m.pt2")
    with_so = rewrite(source, tmp_path / "so.pt2", {"data/aotinductor/model/model.so": b"\x7fELF"})
    with pytest.raises(UnsafeArchive, match="compiled code or pickles"):
        load_exported_program(with_so)
    text = tmp_path / "notes.pt2"
    text.write_text("hello")
    with pytest.raises(UnsafeArchive, match=r"not a torch\.export archive"):
        load_exported_program(text)
