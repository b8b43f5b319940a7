"""What every runtime file of the runner builds on: the :class:`Model` interface, matching data
arrays to a model's inputs, and running a whole data set through a model in batches.

Runtime files live in their backend's folder (``backends/<family>/rt_<runtime>.py``), depend only
on the standard library, numpy, this module and their runtime, and define ``MODEL``: the class
the worker instantiates as ``MODEL(path, threads)``. They are shipped to devices beside this file.
A runtime file may also define ``runtime_version()``: the worker's environment probe then asks it
(rather than importing the runtime's module itself).
"""
from __future__ import annotations

import numpy as np


class WrongPlatform(RuntimeError):
    """This runtime cannot run on this device's OS at all (not a fault of the artifact): its message is the
    one sentence the user sees ("X runs only on macOS (this device is Linux x86_64)")."""


class Model:
    """A loaded artifact. Subclasses know one runtime; none knows transport."""

    runtime = ""
    batch_limit = None  # fixed batch size of the model's inputs, or None if dynamic
    # what the artifact declares (``declare``): [{"name", "shape", "dtype"}] and output names, in order
    inputs: list | None = None
    outputs: list | None = None

    def declare(self, inputs: list, outputs: list) -> None:
        """The inputs and outputs an artifact compiled for fixed shapes declares (a module's metadata, a
        package's spec): ``input_specs``/``output_names`` answer from them, and the first input's first
        dimension is the batch the artifact takes."""
        self.inputs, self.outputs = list(inputs), list(outputs)
        first = self.inputs[0]["shape"] if self.inputs else []
        self.batch_limit = int(first[0]) if first else None

    def input_specs(self) -> list:
        if self.inputs is None:
            raise NotImplementedError
        return [{k: s[k] for k in ("name", "shape", "dtype") if k in s} for s in self.inputs]

    def output_names(self) -> list:
        if self.outputs is None:
            raise NotImplementedError
        return list(self.outputs)

    def prepare(self, feed: dict) -> dict:
        """Cast/quantize a float/int feed to what the model takes (outside the timed path)."""
        return feed

    def run(self, feed: dict) -> dict:
        raise NotImplementedError

    def usage(self) -> dict | None:
        """What this runtime chose for the samples prepared since the last call, then forgotten (e.g.
        ``{"buckets": {"seq16": 80, "seq32": 20}}``: how many ran in each shape bucket); None: it chooses nothing."""
        return None

    def runtime_timer(self, feed: dict, runs: int, seconds: float) -> dict | None:
        """The runtime's own timing of the same call, recorded beside edgekit's (e.g. a compiler's
        time evaluator): ``{"name": ..., "p50_ms": ..., "n": ...}``, taking about ``seconds`` for at
        most ``runs`` calls; None when the runtime has no timer of its own."""
        return None


def lookup_input(feed: dict, name: str):
    """The data array for model input ``name``: exact, then the converter-decorated name's core
    (``serving_default_x:0`` -> ``x``), then a unique prefix match, then the only array there is."""
    if name in feed:
        return feed[name]
    core = name.split(":")[0].replace("serving_default_", "")
    if core in feed:
        return feed[core]
    close = [k for k in feed if core.startswith(k) or k.startswith(core)]
    if len(close) == 1:
        return feed[close[0]]
    if len(feed) == 1:
        return next(iter(feed.values()))
    raise KeyError(f"the model's input '{name}' is not in the data (which has {sorted(feed)})")


def fixed_input(feed: dict, spec: dict, built: str = "the artifact is built"):
    """Input ``spec`` ({"name", "shape", "dtype"}) of an artifact compiled for one shape: the data's array,
    contiguous, in the spec's dtype; a ValueError naming both shapes when it differs."""
    import numpy as np

    a = np.ascontiguousarray(np.asarray(lookup_input(feed, spec["name"])).astype(spec["dtype"], copy=False))
    if list(a.shape) != list(spec["shape"]):
        raise ValueError(f"input '{spec['name']}' has shape {list(a.shape)}; {built} for {spec['shape']}")
    return a


def used_length(feed: dict, full: int, axis: int = 1) -> int:
    """How much of axis ``axis`` the feed uses: 1 + the last position where any input of length ``full`` on
    that axis is non-zero (the pad value 0 on the right, as tokenizers pad); 0 when all are padding."""
    used = 0
    for a in feed.values():
        a = np.asarray(a)
        if a.ndim > axis and a.shape[axis] == full:
            other = tuple(i for i in range(a.ndim) if i != axis)
            nz = np.flatnonzero(np.any(a != 0, axis=other) if other else a != 0)
            if len(nz):
                used = max(used, int(nz[-1]) + 1)
    return used


def bucket_for(feed: dict, buckets, axis: int = 1) -> int:
    """The smallest of ``buckets`` (increasing lengths, the last the model's full length on ``axis``) that
    holds the feed's used length (:func:`used_length`)."""
    used = used_length(feed, buckets[-1], axis)
    return next(b for b in buckets if b >= used)


def trim(feed: dict, length: int, axis: int = 1, full: int | None = None) -> dict:
    """The feed with every input of length ``full`` on ``axis`` (default: the longest there) cut to ``length``."""
    if full is None:
        full = max((np.shape(a)[axis] for a in feed.values() if np.ndim(a) > axis), default=length)
    index = (slice(None),) * axis + (slice(0, length),)
    return {k: (a[index] if np.ndim(a) > axis and np.shape(a)[axis] == full else a) for k, a in feed.items()}


def sample_feed(arrays: dict, i: int, stacked=()) -> dict:
    """Sample ``i`` as the model takes it: a stacked input without its sample axis, a batched one
    as a batch of one."""
    return {k: (v[i] if k in stacked else v[i:i + 1]) for k, v in arrays.items()}


def run_all(model: Model, arrays: dict, stacked=()) -> dict:
    """Run every sample of ``arrays`` through ``model`` in batches it accepts; with ``stacked``
    inputs, one sample at a time, the outputs stacked on a new leading axis."""
    n = len(next(iter(arrays.values())))
    if stacked:
        pieces = [model.run(model.prepare(sample_feed(arrays, i, stacked))) for i in range(n)]
        return {name: np.stack([p[name] for p in pieces]) for name in pieces[0]}
    step = model.batch_limit or min(n, 64)
    pieces = []
    for start in range(0, n, step):
        feed = model.prepare({k: v[start:start + step] for k, v in arrays.items()})
        pieces.append(model.run(feed))
    return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
