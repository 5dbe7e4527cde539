"""Decoder language models for tests and benchmarks, made here (nothing is downloaded).

``train_small`` trains a Llama-shaped decoder (4 layers, 256 hidden, a 512-token byte-level BPE
vocabulary learnt from the same text) on tests/data/llm_corpus.txt and saves it as a Hugging Face
folder: ``model.safetensors``, ``config.json``, ``tokenizer.json``, ``tokenizer_config.json`` and a
chat template. ``random_large`` saves a randomly initialised one of about 124M parameters (12 layers)
for speed and memory benchmarks. ``pack`` makes the uncompressed tar a build is posted as.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from tests.llm_corpus import CORPUS, generate, prompt_set

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
EOS = "<|endoftext|>"


def _tokenizer(lines: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def train_small(folder: Path, *, steps: int = 150, seed: int = 0) -> Path:
    """Train the test decoder into ``folder`` (about 30-60 s on 2 busy cores). Returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.monotonic()
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # One thread: on a busy 2-core machine two threads spin against each other (measured 10x slower).
    torch.set_num_threads(1)
    text = CORPUS.read_text()
    fast = _tokenizer(text.splitlines(), 512)
    ids = torch.tensor(fast.backend_tokenizer.encode(text).ids)
    # intermediate_size differs from vocab_size on purpose: the model builder takes any Linear with
    # vocab_size outputs for the LM head (onnxruntime-genai 0.18).
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    length, batch = 32, 8
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - length - 1, (batch,), generator=generator)
        x = torch.stack([ids[s:s + length] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps({"steps": steps, "final_loss": float(loss.detach()),
                                                       "seconds": time.monotonic() - started}))
    return folder


def random_large(folder: Path, *, layers: int = 12, seed: int = 0) -> Path:
    """A randomly initialised decoder of 768 hidden and a 32k vocabulary, for benchmarks: with 12 layers
    about 124M parameters (49M of them the embedding and the LM head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    fast = _tokenizer(CORPUS.read_text().splitlines()[:300], 512)
    config = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=layers,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


def pack(folder: Path, *, skip: tuple[str, ...] = ("training.json",), extra: dict[str, bytes] | None = None) -> bytes:
    """The folder as the uncompressed tar a language-model build is posted as."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name not in skip:
                tar.add(str(path), arcname=f"model/{path.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"model/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def eval_jsonl(held_out_lines: int = 30, prompts: int = 24) -> bytes:
    """Evaluation data of a language model: held-out text lines and a prompt set, as JSON Lines."""
    held = generate(held_out_lines, seed=99).splitlines()  # text the model never saw
    records = [{"text": line} for line in held] + prompt_set(prompts)
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()
