"""Compressed variants of an ONNX model, one module per technique (see workers.ml.compress)."""
