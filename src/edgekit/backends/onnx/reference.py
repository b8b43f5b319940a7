"""An ONNX source as the reference: through the runner with ONNX Runtime, like any ONNX artifact."""
from __future__ import annotations

from ...core.reference import Reference


class OnnxReference(Reference):
    label = "onnxruntime fp32"

    def __init__(self, source, device_factory):
        from ...core.session import RunnerSession

        self.device = device_factory()
        self.session = RunnerSession(self.device, runtimes=["onnxruntime"])
        self.session.load(source.path, "onnxruntime", threads=1)

    def outputs(self, arrays, stacked=()):
        return self.session.infer(arrays, stacked)

    def bench(self, sample, threads, stacked=(), **params):
        return self.session.bench(sample, stacked, **params)

    def close(self):
        self.session.close()
        self.device.close()
