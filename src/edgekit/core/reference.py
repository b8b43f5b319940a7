"""The source model as the reference: its outputs on the eval inputs and its own latency.

How a source of a format runs is its backend's knowledge (the format's ``reference`` hook):
frameworks already loaded to read the source run it in this process; a format with a runtime
of its own runs it through the runner, like any artifact.
"""
from __future__ import annotations


class Reference:
    label = "source"

    def outputs(self, arrays: dict, stacked=()) -> dict:
        """Outputs for every sample of ``arrays`` (``stacked``: inputs whose samples are stacked on a
        new leading axis, fed one at a time; see ``runner.runtime_base.sample_feed``)."""
        raise NotImplementedError

    def bench(self, sample: dict, threads: int, stacked=(), **params) -> dict:
        raise NotImplementedError

    def close(self):
        pass


class RunnerReference(Reference):
    """A source that is itself a runtime's format (an .onnx, a .tflite): run through the runner like any
    artifact of that runtime. Subclasses name the ``runtime`` and its ``label``."""

    runtime: str = ""

    def __init__(self, source, device_factory):
        from .session import RunnerSession

        self.device = device_factory()
        self.session = RunnerSession(self.device, runtimes=[self.runtime])
        self.session.load(source.path, self.runtime, threads=1)

    def outputs(self, arrays, stacked=()):
        return self.session.infer(arrays, stacked)

    def bench(self, sample, threads, stacked=(), **params):
        return self.session.bench(sample, stacked, **params)

    def close(self):
        self.session.close()
        self.device.close()


def reference_for(source, device_factory) -> Reference:
    from ..backends import get_backend, get_format

    fmt = get_format(source.format)
    if not fmt.reference:
        from .errors import UserError

        raise UserError(f"a {source.format} model cannot be run as the reference (its backend '{fmt.backend}' "
                        "says not how).", "Convert it to a format that can, and use that file as the source.")
    return get_backend(fmt.backend).hook(fmt.reference)(source, device_factory)
