"""Checks of a language-model build and its evaluation data, in the web process, before anything is stored.

The build is an uncompressed tar of a Hugging Face folder: ``config.json`` naming a supported
architecture, ``tokenizer.json`` (a fast tokenizer; ``tokenizer_config.json`` and a chat template
optional), and safetensors weights — ``model.safetensors``, or shards listed by
``model.safetensors.index.json``. Pickled weights (``*.bin``, ``*.pt``) are refused. Only headers
and the small JSON files are read; nothing is executed or unpickled.

The evaluation data is JSON Lines: ``{"text": ...}`` lines are held-out text (perplexity) and
``{"prompt": ..., "completion": ...}`` lines the prompt set (``completion`` optional).
"""

from __future__ import annotations

import json
import struct
import tarfile
from dataclasses import dataclass, field

from releases.intake import PICKLE_SUFFIXES, BadUpload
from releases.uploads import HashedUpload
from serving.llm.bundle import BundleError, member_names

# Decoder architectures the converter (onnxruntime-genai's model builder) turns into ONNX with a KV cache.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                           "Phi3ForCausalLM", "GemmaForCausalLM")
INDEX = "model.safetensors.index.json"
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_EVAL_LINES = 10_000
MAX_FIELD_CHARS = 100_000


@dataclass(frozen=True)
class LanguageEvalSet:
    texts: list[str] = field(default_factory=list)
    prompts: list[tuple[str, str | None]] = field(default_factory=list)  # (prompt, expected completion)


def check_build(upload: HashedUpload) -> str:
    """Check a language-model build (see the module docstring); returns its file format, ``hf-tar``."""
    if upload.size == 0:
        raise BadUpload("artifact is empty (0 bytes)")
    upload.seek(0)
    try:
        with tarfile.open(fileobj=upload.file, mode="r:") as tar:
            files = member_names(tar.getmembers())
            _check_files(tar, files)
    except BundleError as exc:
        raise BadUpload(f"artifact: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise BadUpload("a language-model build must be an uncompressed tar of a Hugging Face folder "
                        f"(config.json, tokenizer.json, *.safetensors): {exc}") from None
    finally:
        upload.seek(0)
    return "hf-tar"


def _check_files(tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo]) -> None:
    pickled = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if pickled:
        raise BadUpload(f"the build holds pickled files ({', '.join(pickled)}); Slipway never loads pickles: "
                        "save the weights as safetensors (save_pretrained(safe_serialization=True))")
    if "config.json" not in files:
        raise BadUpload("the build has no config.json")
    config = _json(tar, files["config.json"])
    architectures = config.get("architectures") or []
    if not architectures or architectures[0] not in SUPPORTED_ARCHITECTURES:
        raise BadUpload(f"config.json names the architecture {architectures[0] if architectures else None!r}, "
                        f"which is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    if "tokenizer.json" not in files:
        raise BadUpload("the build has no tokenizer.json (a fast tokenizer is required: "
                        "tokenizer.save_pretrained() of a PreTrainedTokenizerFast writes it)")
    shards = sorted(name for name in files if name.endswith(".safetensors"))
    if not shards:
        raise BadUpload("the build has no .safetensors weights")
    tensors = {shard: _safetensors_names(tar, files[shard], shard) for shard in shards}
    if INDEX in files:
        weight_map = _json(tar, files[INDEX]).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise BadUpload(f"{INDEX} has no weight_map")
        listed = set(weight_map.values())
        if listed != set(shards):
            raise BadUpload(f"the shards do not match {INDEX}: missing {sorted(listed - set(shards)) or 'none'}, "
                            f"not listed {sorted(set(shards) - listed) or 'none'}")
        wrong = sorted(name for name, shard in weight_map.items() if name not in tensors[shard])
        if wrong:
            raise BadUpload(f"{INDEX} places {len(wrong)} tensors in shards that do not hold them "
                            f"(first: {wrong[0]!r} in {weight_map[wrong[0]]!r})")
    elif len(shards) > 1:
        raise BadUpload(f"the build has {len(shards)} safetensors shards but no {INDEX}")


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo, limit: int, what: str) -> bytes:
    if info.size > limit:
        raise BadUpload(f"{what} is {info.size} bytes; at most {limit}")
    handle = tar.extractfile(info)
    return handle.read() if handle is not None else b""


def _json(tar: tarfile.TarFile, info: tarfile.TarInfo) -> dict:
    name = info.name.rsplit("/", 1)[-1]
    try:
        data = json.loads(_read(tar, info, MAX_JSON_BYTES, name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadUpload(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadUpload(f"{name} is not a JSON object")
    return data


def _safetensors_names(tar: tarfile.TarFile, info: tarfile.TarInfo, shard: str) -> set[str]:
    handle = tar.extractfile(info)
    if handle is None:
        raise BadUpload(f"{shard} cannot be read")
    head = handle.read(8)
    if len(head) < 8:
        raise BadUpload(f"{shard} is too short to be safetensors")
    (length,) = struct.unpack("<Q", head)
    if length > min(MAX_HEADER_BYTES, info.size - 8):
        raise BadUpload(f"{shard} has no valid safetensors header")
    try:
        header = json.loads(handle.read(length))
    except (ValueError, UnicodeDecodeError):
        raise BadUpload(f"{shard} has no valid safetensors header") from None
    if not isinstance(header, dict):
        raise BadUpload(f"{shard} has no valid safetensors header")
    return {name for name in header if name != "__metadata__"}


def check_eval_data(upload: HashedUpload) -> LanguageEvalSet:
    """Check the JSON Lines evaluation data of a language model (see the module docstring)."""
    if upload.size == 0:
        raise BadUpload("eval_data is empty (0 bytes)")
    upload.seek(0)
    try:
        return parse_eval_data(upload.read())
    finally:
        upload.seek(0)


def parse_eval_data(data: bytes) -> LanguageEvalSet:
    """Held-out texts and prompts from JSON Lines bytes; raise BadUpload saying which line is wrong."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise BadUpload("eval_data is not UTF-8 text; a language model's evaluation data is JSON Lines") from None
    if len(lines) > MAX_EVAL_LINES:
        raise BadUpload(f"eval_data has {len(lines)} lines; at most {MAX_EVAL_LINES}")
    result = LanguageEvalSet()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _record(line, number)
        if set(record) == {"text"}:
            result.texts.append(record["text"])
        elif "prompt" in record and set(record) <= {"prompt", "completion"}:
            result.prompts.append((record["prompt"], record.get("completion")))
        else:
            raise BadUpload(f"eval_data line {number}: expected {{\"text\": ...}} or "
                            f"{{\"prompt\": ..., \"completion\": ...}}, got the keys {sorted(record)}")
    if not result.texts:
        raise BadUpload('eval_data has no held-out text: add {"text": "..."} lines (perplexity is measured on them)')
    if not result.prompts:
        raise BadUpload('eval_data has no prompts: add {"prompt": "...", "completion": "..."} lines')
    return result


def _record(line: str, number: int) -> dict[str, str]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise BadUpload(f"eval_data line {number} is not JSON ({exc}); a language model's evaluation data is "
                        "JSON Lines: one object per line") from None
    if not isinstance(record, dict):
        raise BadUpload(f"eval_data line {number} is not a JSON object")
    for key, value in record.items():
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
            raise BadUpload(f"eval_data line {number}: {key!r} must be a non-empty string of at most "
                            f"{MAX_FIELD_CHARS} characters")
    return record
