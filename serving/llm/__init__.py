"""Serving a decoder language model: an ONNX model with a KV cache, its tokenizer and an OpenAI-style API.

A language-model artifact is one uncompressed tar (see :mod:`serving.llm.bundle`) holding the ONNX
decoder (``model.onnx`` and its external data), ``genai_config.json`` (input/output names, cache
shape, end-of-text ids) and the tokenizer (``tokenizer.json``, optional chat template).
"""
