"""POST /api/v1/builds/ with a language model: the tar of a Hugging Face folder and JSON Lines evaluation
data are checked before anything is stored; each bad input is a 400 saying what is wrong."""

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.numpy import save

from releases.models import Model, ModelVersion
from releases.storage import get_store
from tests.conftest import build_form, token_client

URL = "/api/v1/builds/"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8}
EVAL = b'{"text": "the held-out text"}\n{"prompt": "Once", "completion": " upon"}\n{"prompt": "Twice"}\n'


def weights(*names: str) -> bytes:
    return save({name: np.zeros((2, 2), dtype=np.float32) for name in names})


def hf_tar(files: dict[str, bytes], *, folder: str = "model") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def good_files() -> dict[str, bytes]:
    return {"config.json": json.dumps(CONFIG).encode(), "tokenizer.json": b"{}",
            "model.safetensors": weights("a", "b")}


def form(artifact: bytes, eval_data: bytes = EVAL, **overrides: object) -> dict:
    return build_form(model="chat", task="language_model", metadata="{}",
                      artifact=SimpleUploadedFile("chat.tar", artifact),
                      eval_data=SimpleUploadedFile("eval.jsonl", eval_data), **overrides)


def stored_objects() -> list[Path]:
    return sorted(p for p in (get_store().root / "objects").rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def _empty_store(settings, tmp_path) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def ci(users):
    return token_client(users["ci"], ["builds:write", "releases:read"])


def test_a_language_model_build_is_stored_with_its_formats_and_policy(ci):
    response = ci.post(URL, form(hf_tar(good_files())), format="multipart")
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get()
    assert (version.artifact.file_format, version.eval_data.file_format) == ("hf-tar", "jsonl")
    model = Model.objects.get(name="chat")
    assert model.task == "language_model"
    assert model.policy.candidates == ["int4-rtn-b32", "int4-rtn-b128", "int4-gptq-b128", "int8-b32", "fp16"]
    assert (model.policy.max_perplexity_increase, model.policy.min_greedy_agreement) == (0.03, 0.9)


def test_sharded_weights_matching_their_index_are_accepted(ci):
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    files = good_files() | {"model.safetensors.index.json": json.dumps(index).encode(),
                            "model-00001-of-00002.safetensors": weights("a"),
                            "model-00002-of-00002.safetensors": weights("b")}
    del files["model.safetensors"]
    assert ci.post(URL, form(hf_tar(files, folder="")), format="multipart").status_code == 201


def _index(weight_map: dict[str, str]) -> bytes:
    return json.dumps({"weight_map": weight_map}).encode()


@pytest.mark.parametrize(("files", "expected"), [
    ({"config.json": json.dumps(CONFIG | {"architectures": ["GPT2LMHeadModel"]}).encode()},
     "architecture 'GPT2LMHeadModel', which is not supported"),
    ({"tokenizer.json": None}, "no tokenizer.json"),
    ({"model.safetensors": None}, "no .safetensors weights"),
    ({"pytorch_model.bin": pickle.dumps({"a": 1})}, "pickled files (pytorch_model.bin)"),
    ({"model.safetensors.index.json": _index({"a": "model.safetensors", "b": "model-2.safetensors"})},
     "shards do not match model.safetensors.index.json: missing ['model-2.safetensors']"),
    ({"model.safetensors.index.json": _index({"a": "model.safetensors", "zz": "model.safetensors"})},
     "places 1 tensors in shards that do not hold them (first: 'zz'"),
    ({"model.safetensors": b"\xff" * 16}, "model.safetensors has no valid safetensors header"),
    ({"config.json": b"{not json"}, "config.json is not valid JSON"),
])
def test_a_bad_language_model_build_is_refused_with_the_reason_and_nothing_stored(ci, files, expected):
    chosen = {k: v for k, v in (good_files() | files).items() if v is not None}
    response = ci.post(URL, form(hf_tar(chosen)), format="multipart")
    assert response.status_code == 400, response.json()
    assert expected in response.json()["detail"]
    assert stored_objects() == [] and not ModelVersion.objects.exists()


def test_links_and_compressed_archives_are_refused(ci):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        info = tarfile.TarInfo("model/config.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    response = ci.post(URL, form(buffer.getvalue()), format="multipart")
    assert response.status_code == 400 and "not a regular file" in response.json()["detail"]
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    response = ci.post(URL, form(gz.getvalue()), format="multipart")
    assert response.status_code == 400 and "uncompressed tar" in response.json()["detail"]


@pytest.mark.parametrize(("eval_data", "expected"), [
    (b"prompt,completion\nOnce,upon\n", "line 1 is not JSON"),
    (b'{"text": "x"}\n["a list"]\n', "line 2 is not a JSON object"),
    (b'{"text": "x"}\n{"question": "why"}\n', "line 2: expected"),
    (b'{"prompt": "Once"}\n', "no held-out text"),
    (b'{"text": "x"}\n', "no prompts"),
    (b'{"text": "x"}\n{"prompt": 3}\n', "'prompt' must be a non-empty string"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_evaluation_data_that_is_not_a_prompt_set_in_json_lines_is_refused(ci, eval_data, expected):
    response = ci.post(URL, form(hf_tar(good_files()), eval_data), format="multipart")
    assert response.status_code == 400, response.json()
    assert expected in response.json()["detail"]
    assert stored_objects() == []
