"""A torch source as the reference: eager, in this process (torch is already loaded to read it)."""
from __future__ import annotations

import numpy as np

from ...core.reference import Reference
from ...runner.runtime_base import sample_feed
from ...runner.worker import time_calls


class TorchReference(Reference):
    label = "torch eager fp32"

    def __init__(self, source, device_factory=None):
        self.source = source

    def _call(self, torch, feed):
        # positionally, in the source's input order (modules from .pt2 files take no keywords)
        out = self.source.obj(*[torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in self.source.inputs])
        if isinstance(out, dict):
            return {k: v.numpy() for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            return {n: v.numpy() for n, v in zip(self.source.outputs, out)}
        return {self.source.outputs[0]: out.numpy()}

    def outputs(self, arrays, stacked=()):
        import torch

        names = [s.name for s in self.source.inputs]
        n = len(arrays[names[0]])
        if stacked:  # one sample at a time, outputs stacked on a new axis (runner.runtime_base.run_all)
            with torch.no_grad():
                pieces = [self._call(torch, {k: v.astype(_dt(self.source, k)) for k, v in
                                             sample_feed({k: arrays[k] for k in names}, i, stacked).items()})
                          for i in range(n)]
            return {k: np.stack([p[k] for p in pieces]) for k in pieces[0]}
        step = min(n, 64)
        pieces = []
        with torch.no_grad():
            start = 0
            while start < n:
                feed = {k: arrays[k][start:start + step].astype(_dt(self.source, k)) for k in names}
                try:
                    pieces.append(self._call(torch, feed))
                except Exception:
                    if step == self.source.inputs[0].fixed_shape()[0]:
                        raise
                    step = self.source.inputs[0].fixed_shape()[0]  # a module exported for a fixed batch
                    continue
                start += step
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def bench(self, sample, threads, stacked=(), **params):
        import torch

        sample = sample_feed(sample, 0, stacked)
        feed = [torch.from_numpy(np.ascontiguousarray(sample[s.name].astype(s.dtype))) for s in self.source.inputs]
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                return time_calls(lambda: self.source.obj(*feed), **params)
        finally:
            torch.set_num_threads(before)


def _dt(source, name):
    return next(s.dtype for s in source.inputs if s.name == name)
