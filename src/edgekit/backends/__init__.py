"""Built-in converters (edges of the graph). Importing this registers them; every heavy
framework is imported inside ``convert`` so that listing the graph stays fast."""
from .tflite import from_torch, converters
from .torch import onnx_export
from .onnx import transforms  # noqa: F401
