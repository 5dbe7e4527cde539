"""Decoder language models: intake of a Hugging Face folder, conversion to ONNX with a KV cache,
weight-only candidates, and evaluation (perplexity, KL to fp32, greedy agreement, token timings)."""
