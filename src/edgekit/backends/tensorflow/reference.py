"""SavedModel and Keras sources as the reference: TensorFlow, in this process."""
from __future__ import annotations

import numpy as np

from ...core.reference import Reference
from ...runner.runtime_base import sample_feed
from ...runner.worker import time_calls


class TfReference(Reference):
    label = "tensorflow fp32"

    def __init__(self, source, device_factory=None):
        from ...core.lazy import import_quietly

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

    def outputs(self, arrays, stacked=()):
        n = len(next(iter(arrays.values())))
        pieces = [self._run(sample_feed(arrays, i, stacked)) for i in range(n)]
        join = np.stack if stacked else np.concatenate
        return {k: join([p[k] for p in pieces]) for k in pieces[0]}

    def bench(self, sample, threads, stacked=(), **params):
        feed = {k: self.tf.constant(v) for k, v in sample_feed(sample, 0, stacked).items()}
        return time_calls(lambda: self.fn(**feed), **params)
