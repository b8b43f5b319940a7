"""The source model as the reference: its outputs on the eval inputs and its own latency.

Torch and TensorFlow sources run in this process (their frameworks are already loaded); an
ONNX source runs through the runner with ONNX Runtime, like any ONNX artifact.
"""
from __future__ import annotations

import numpy as np

from ..runner.worker import time_calls


class Reference:
    label = "source"

    def outputs(self, arrays: dict) -> dict:
        raise NotImplementedError

    def bench(self, sample: dict, threads: int, **params) -> dict:
        raise NotImplementedError

    def close(self):
        pass


class TorchReference(Reference):
    label = "torch eager fp32"

    def __init__(self, source):
        self.source = source

    def _call(self, torch, feed):
        # positionally, in the source's input order (modules from .pt2 files take no keywords)
        out = self.source.obj(*[torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in self.source.inputs])
        if isinstance(out, dict):
            return {k: v.numpy() for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            return {n: v.numpy() for n, v in zip(self.source.outputs, out)}
        return {self.source.outputs[0]: out.numpy()}

    def outputs(self, arrays):
        import torch

        names = [s.name for s in self.source.inputs]
        n = len(arrays[names[0]])
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

    def bench(self, sample, threads, **params):
        import torch

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


class OnnxReference(Reference):
    label = "onnxruntime fp32"

    def __init__(self, source, device_factory):
        from .session import RunnerSession

        self.device = device_factory()
        self.session = RunnerSession(self.device)
        self.session.load(source.path, "onnxruntime", threads=1)

    def outputs(self, arrays):
        return self.session.infer(arrays)

    def bench(self, sample, threads, **params):
        return self.session.bench(sample, **params)

    def close(self):
        self.session.close()
        self.device.close()


class TfReference(Reference):
    label = "tensorflow fp32"

    def __init__(self, source):
        from .lazy import import_quietly

        tf = import_quietly("tensorflow", "tflite", "A TensorFlow source")

        self.tf = tf
        if source.format == "keras":
            self.fn = lambda **kw: source.obj(kw if len(kw) > 1 else next(iter(kw.values())), training=False)
        else:
            self.fn = tf.saved_model.load(str(source.path)).signatures["serving_default"]
        self.source = source

    def _run(self, feed):
        out = self.fn(**{k: self.tf.constant(v) for k, v in feed.items()})
        if isinstance(out, dict):
            return {k: v.numpy() for k, v in out.items()}
        out = out if isinstance(out, (list, tuple)) else [out]
        return {n: v.numpy() for n, v in zip(self.source.outputs, out)}

    def outputs(self, arrays):
        n = len(next(iter(arrays.values())))
        pieces = [self._run({k: v[i:i + 1] for k, v in arrays.items()}) for i in range(n)]
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

    def bench(self, sample, threads, **params):
        feed = {k: self.tf.constant(v) for k, v in sample.items()}
        return time_calls(lambda: self.fn(**feed), **params)


def reference_for(source, device_factory) -> Reference:
    if source.format == "torch":
        return TorchReference(source)
    if source.format == "onnx":
        return OnnxReference(source, device_factory)
    return TfReference(source)
