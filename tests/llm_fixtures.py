"""Session fixtures: the small decoder trained once per test session, its ONNX folder and bundle."""

from pathlib import Path

import pytest

from tests.llm_model import train_small


@pytest.fixture(scope="session")
def small_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder of the decoder trained on tests/data/llm_corpus.txt."""
    return train_small(tmp_path_factory.mktemp("small-llm"))


@pytest.fixture(scope="session")
def small_llm_onnx(small_llm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same decoder as an ONNX folder with a KV cache (the model builder's output)."""
    from workers.ml.llm.convert import run_builder

    out = tmp_path_factory.mktemp("small-llm-onnx") / "fp32"
    run_builder(small_llm, out)
    return out


@pytest.fixture(scope="session")
def small_llm_bundle(small_llm_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That ONNX folder as the one-file artifact a model server takes."""
    from serving.llm.bundle import pack

    return pack(small_llm_onnx, tmp_path_factory.mktemp("small-llm-bundle") / "decoder.tar")
