"""An ONNX decoder with a KV cache (past key/values in, present key/values out), run by ONNX Runtime.

The model's names and cache shape come from ``genai_config.json`` (what onnxruntime-genai's model
builder writes). Greedy decoding and sampling are plain loops over :meth:`Decoder.forward`.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

CONFIG = "genai_config.json"
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class DecoderError(ValueError):
    """The folder does not hold a usable decoder; the message says why."""


@dataclass(frozen=True)
class DecoderConfig:
    filename: str
    layers: int
    kv_heads: int
    head_size: int
    vocab_size: int
    context_length: int
    eos_ids: frozenset[int]
    input_ids: str
    attention_mask: str
    past_names: tuple[str, ...]  # key 0, value 0, key 1, value 1, ...
    logits: str
    present_names: tuple[str, ...]

    @classmethod
    def load(cls, folder: Path) -> DecoderConfig:
        try:
            model = json.loads((folder / CONFIG).read_text())["model"]
            decoder = model["decoder"]
            inputs, outputs = decoder["inputs"], decoder["outputs"]
            layers = int(decoder["num_hidden_layers"])
            eos = model["eos_token_id"]
            return cls(
                filename=decoder["filename"], layers=layers, kv_heads=int(decoder["num_key_value_heads"]),
                head_size=int(decoder["head_size"]), vocab_size=int(model["vocab_size"]),
                context_length=int(model["context_length"]),
                eos_ids=frozenset(eos if isinstance(eos, list) else [eos]),
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                past_names=tuple(name for i in range(layers) for name in
                                 (inputs["past_key_names"] % i, inputs["past_value_names"] % i)),
                logits=outputs["logits"],
                present_names=tuple(name for i in range(layers) for name in
                                    (outputs["present_key_names"] % i, outputs["present_value_names"] % i)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DecoderError(f"{CONFIG} is missing or incomplete: {exc}") from exc


Past = list[np.ndarray]


class Decoder:
    """One ONNX Runtime session of the decoder; thread-safe (each call carries its own cache)."""

    def __init__(self, folder: Path, *, threads: int = 0, device: str = "cpu") -> None:
        self.config = DecoderConfig.load(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = PROVIDERS["cuda" if device.startswith("cuda") else "cpu"]
        providers = [p for p in providers if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(folder / self.config.filename), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise DecoderError(f"ONNX Runtime cannot load the decoder: {exc}") from exc
        kinds = {node.name: node.type for node in self.session.get_inputs()}
        self.cache_dtype = np.float16 if kinds.get(self.config.past_names[0]) == "tensor(float16)" else np.float32
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self._outputs = [self.config.logits, *self.config.present_names]

    def empty_past(self) -> Past:
        shape = (1, self.config.kv_heads, 0, self.config.head_size)
        return [np.zeros(shape, dtype=self.cache_dtype) for _ in self.config.past_names]

    def forward(self, ids: list[int] | np.ndarray, past: Past) -> tuple[np.ndarray, Past]:
        """Logits (tokens, vocab) as float32 for ``ids`` following ``past``, and the new cache."""
        tokens = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        total = past[0].shape[2] + tokens.shape[1]
        feeds = {self.config.input_ids: tokens, self.config.attention_mask: np.ones((1, total), dtype=np.int64)}
        feeds.update(zip(self.config.past_names, past, strict=True))
        logits, *present = self.session.run(self._outputs, feeds)
        return logits[0].astype(np.float32), present

    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits at every position of ``ids`` (one prefill, no cache)."""
        return self.forward(ids, self.empty_past())[0]

    def check_length(self, prompt_tokens: int, new_tokens: int) -> None:
        limit = self.config.context_length
        if prompt_tokens + new_tokens > limit:
            raise ValueError(f"the prompt ({prompt_tokens} tokens) and max_tokens ({new_tokens}) exceed the "
                             f"model's context of {limit} tokens")

    def generate(self, ids: list[int], max_new_tokens: int, *, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop_at_eos: bool = True) -> Generator[int, None, None]:
        """Yield new tokens one by one: greedy when ``temperature`` is 0, else sampled (top-p)."""
        if not ids:
            raise ValueError("the prompt holds no tokens")
        self.check_length(len(ids), max_new_tokens)
        rng = np.random.default_rng(seed)
        logits, past = self.forward(ids, self.empty_past())
        for produced in range(max_new_tokens):
            token = pick_token(logits[-1], temperature, top_p, rng)
            yield token
            if (stop_at_eos and token in self.config.eos_ids) or produced + 1 == max_new_tokens:
                return
            logits, past = self.forward([token], past)


def pick_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) - probs[order] < top_p
    kept = order[keep]
    weights = probs[kept] / probs[kept].sum()
    return int(rng.choice(kept, p=weights))
