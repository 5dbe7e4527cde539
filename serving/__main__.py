"""``python -m serving --model PATH --port N ...``: serve one ONNX model over HTTP."""

from serving.config import parse_config
from serving.server import serve

serve(parse_config())
