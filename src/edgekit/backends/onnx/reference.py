"""An ONNX source as the reference: through the runner with ONNX Runtime, like any ONNX artifact."""
from __future__ import annotations

from ...core.reference import RunnerReference


class OnnxReference(RunnerReference):
    runtime, label = "onnxruntime", "onnxruntime fp32"
