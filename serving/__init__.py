"""Slipway's model server: one ONNX model over HTTP, small enough to bake into a release image.

It must not import Django or anything from the web application.
"""
