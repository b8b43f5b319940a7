"""A TFLite source as the reference: through the runner with LiteRT, like any TFLite artifact."""
from __future__ import annotations

from ...core.reference import Reference


class LiteRtReference(Reference):
    label = "litert fp32"

    def __init__(self, source, device_factory):
        from ...core.session import RunnerSession

        self.device = device_factory()
        self.session = RunnerSession(self.device, runtimes=["litert"])
        self.session.load(source.path, "litert", threads=1)

    def outputs(self, arrays, stacked=()):
        return self.session.infer(arrays, stacked)

    def bench(self, sample, threads, stacked=(), **params):
        return self.session.bench(sample, stacked, **params)

    def close(self):
        self.session.close()
        self.device.close()
