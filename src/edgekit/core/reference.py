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


def reference_for(source, device_factory) -> Reference:
    from ..backends import get_backend, get_format

    fmt = get_format(source.format)
    if not fmt.reference:
        from .errors import UserError

        raise UserError(f"a {source.format} model cannot be run as the reference (its backend '{fmt.backend}' "
                        "says not how).", "Convert it to a format that can, and use that file as the source.")
    return get_backend(fmt.backend).hook(fmt.reference)(source, device_factory)
