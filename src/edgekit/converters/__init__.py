"""Built-in converters (edges of the graph). Importing this registers them; every heavy
framework is imported inside ``convert`` so that listing the graph stays fast."""
from . import litert_torch, onnx_from_torch, onnx_transforms, tflite  # noqa: F401
