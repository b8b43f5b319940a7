"""Every intermediate tensor of a float .tflite and of its int8 version on the same samples (LiteRT
with all tensors preserved and no delegates), matched by tensor name: ai-edge-quantizer keeps the
float model's tensors (names and order) and adds its QUANTIZE/DEQUANTIZE tensors after them.

A tensor of the int8 model is read as its consumers read it: dequantized with its scale and zero
point, or, when its producer stayed float and int8 ops read it, the QUANTIZE op's output."""
from __future__ import annotations

import numpy as np

from ..onnx.precision import cosine, tensor_error
from .aeq import interpreter

MASK_LIKE = 1e4  # an element beyond this, at one magnitude with the others beyond it: a mask stand-in


class Run:
    """One model, run sample by sample with every tensor kept."""

    def __init__(self, path, signature: str):
        self.interp = interpreter(path, all_tensors=True)
        self.runner = self.interp.get_signature_runner(signature)
        self.details = {d["name"]: d for d in self.interp.get_tensor_details()}
        self.names = {d["index"]: d["name"] for d in self.details.values()}
        # a float tensor that int8 ops read through a QUANTIZE op: the name of that op's output
        self.read_as = {}
        for op in self.interp._get_ops_details():
            if op["op_name"] == "QUANTIZE" and op["inputs"][0] in self.names and op["outputs"][0] in self.names:
                src = self.details[self.names[op["inputs"][0]]]
                if np.dtype(src["dtype"]).kind == "f":
                    self.read_as[src["name"]] = self.names[op["outputs"][0]]

    def __call__(self, feed: dict) -> dict:
        return self.runner(**feed)

    def value(self, name: str):
        """Tensor ``name`` of the last run in float, as its consumers read it (None: not kept)."""
        d = self.details.get(self.read_as.get(name, name))
        if d is None:
            return None
        try:
            a = self.interp.get_tensor(d["index"])
        except ValueError:
            return None
        if a.dtype.kind in "iu":
            scale, zero = d["quantization"]
            if not scale:
                return None
            return (a.astype(np.float32) - zero) * scale
        return a if a.dtype.kind == "f" else None


def float_names(run: Run) -> list[str]:
    return [n for n, d in run.details.items() if np.dtype(d["dtype"]).kind == "f"]


def mask_like(a: np.ndarray) -> float:
    """The magnitude of a mask stand-in ``a`` holds (-inf, finfo.min, -1e4 added to scores), else 0:
    several elements beyond MASK_LIKE at one magnitude, or a scalar beyond it (the constant a mask is
    made of). One huge activation (BERT's squared outlier channel in a LayerNorm variance, 4.9e4 at
    one token) or a spread of them is not one."""
    fin = np.isfinite(a)
    if not fin.all():
        return float("inf")
    big = np.abs(a[np.abs(a) > MASK_LIKE])
    if big.size == 0 or big.min() < 0.99 * big.max() or (big.size == 1 and a.size > 1):
        return 0.0
    return float(big.max())


def masks(float_path, signature: str, feeds: list[dict]) -> dict[str, float]:
    """Float tensors holding a mask stand-in on some sample: name -> its magnitude."""
    run = Run(float_path, signature)
    names = float_names(run)
    found: dict[str, float] = {}
    for feed in feeds:
        run(feed)
        for n in names:
            a = run.value(n)
            if a is not None and a.size and (m := mask_like(a)):
                found[n] = max(found.get(n, 0.0), m)
    return found


def tensor_errors(float_path, q_path, signature: str, feeds: list[dict]) -> dict[str, float]:
    """Each float tensor's mean relative error in the int8 model (``precision.tensor_error``)."""
    f, q = Run(float_path, signature), Run(q_path, signature)
    names = [n for n in float_names(f) if n in q.details]
    sums: dict[str, list[float]] = {}
    for feed in feeds:
        f(feed)
        q(feed)
        for n in names:
            a, b = f.value(n), q.value(n)
            if a is not None and b is not None and a.size:
                sums.setdefault(n, []).append(tensor_error(a, b.reshape(a.shape) if b.size == a.size else b))
    return {n: float(np.mean(v)) for n, v in sums.items()}


def outputs(path, signature: str, feeds: list[dict]) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner(signature)  # as deployed
    return [{k: np.array(v) for k, v in runner(**feed).items()} for feed in feeds]


def final_cosine(ref: list[dict], got: list[dict]) -> float:
    """The worst output's mean cosine over the samples."""
    return min(float(np.mean([cosine(r[k], g[k]) for r, g in zip(ref, got)])) for k in ref[0])


def top1_agreement(ref: list[dict], got: list[dict]) -> float | None:
    """The share of samples whose first output's top-1 class is unchanged (None: no classes)."""
    k = next(iter(ref[0]))
    if ref[0][k].ndim < 2 or ref[0][k].shape[-1] < 2:
        return None
    return float(np.mean([np.argmax(r[k].reshape(-1)) == np.argmax(g[k].reshape(-1)) for r, g in zip(ref, got)]))
