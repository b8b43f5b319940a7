"""ONNX -> PyTorch with onnx2torch: a second way for ONNX models to reach litert-torch (onnx -> torch
-> tflite), tried after onnx2tf's routes.

The module onnx2torch builds keeps ONNX's shape arithmetic as tensors, which ``torch.export`` cannot
trace; so the graph is first simplified at the source's fixed input shapes (onnxsim, else ONNX shape
inference), and the module is then specialized to those shapes (``onnx_static``), checked against
itself before the rewrite, exported with ``torch.export`` and saved as a ``.pt2`` program: the next
edge opens it as a live module. The artifact takes the source's inputs at their fixed shapes.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from . import onnx_prep as prep

# onnx2torch converts these through torchvision.ops, which the stand-in does not provide
TORCHVISION_OPS = {"NonMaxSuppression", "RoiAlign"}
MAX_ABS_DRIFT = 1e-4  # the specialized module against onnx2torch's own, on one example (relative to scale)


def import_onnx2torch():
    """Import onnx2torch; it imports ``torchvision.ops`` at import time (for two operators). A
    torchvision that imports is used; otherwise a stand-in for those names sits in ``sys.modules``
    for the import only, and is gone afterwards (a later ``import torchvision`` sees the real one)."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if _real_torchvision():
        import onnx2torch

        return onnx2torch
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.ops")}
    sys.modules.update(_stand_in())
    try:
        import onnx2torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return onnx2torch


def uses_stand_in() -> bool:
    nms = sys.modules.get("onnx2torch.node_converters.nms")
    return nms is not None and getattr(nms.torchvision, "_edgekit_stand_in", False)


def _real_torchvision() -> bool:
    if "torchvision.ops" in sys.modules:
        return True
    if importlib.util.find_spec("torchvision") is None:
        return False
    before = set(sys.modules)
    try:
        import torchvision.ops  # noqa: F401
        return True
    except Exception:  # noqa: BLE001  installed but broken (a CUDA build beside a CPU torch): leave no trace
        for name in set(sys.modules) - before:
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        return False


def _stand_in() -> dict:
    def missing(*_a, **_k):
        raise RuntimeError("this operator needs torchvision, which is not installed or does not import")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "batched_nms", "box_convert", "roi_align"):
        setattr(ops, name, missing)
    tv.ops = ops
    tv._edgekit_stand_in = True
    return {"torchvision": tv, "torchvision.ops": ops}


class TorchFromOnnx(Converter):
    src, dst = "onnx", "torch"
    cost = 1.5  # onnx -> torch -> tflite is 5.7: after onnx2tf's routes (3.0 and 3.3)
    requires = (("onnx2torch", "onnx2torch"), ("torch", "torch"), ("onnx", "onnx"))
    tools = ("onnx2torch", "torch", "onnx", "onnxsim")

    def convert(self, artifact, out_dir, ctx):
        import onnx
        import torch

        src = ctx.source
        for s in src.inputs:
            if any(not isinstance(d, int) for d in s.shape[1:]):
                dims = "x".join(str(d) if isinstance(d, int) else "?" for d in s.shape)
                raise ConversionError(self.name(), f"input '{s.name}' has dynamic dimensions ({dims}); the module is "
                                      "built for fixed shapes.", f"Give them sizes: --input {s.name}:{dims} with "
                                      "each ? a number.")
        feed = _examples(src.inputs)
        model = onnx.load(str(artifact.path))
        model, how = prep.fix_shapes(model, src.inputs, _quiet)
        prep.constants_to_initializers(model)
        prep.drop_idle_allowzero(model)
        onnx2torch = import_onnx2torch()
        model, opset_note = prep.fit_opset(model)
        self._check_ops(model)
        names = [s.name for s in src.inputs]
        keep_names = all(n.isidentifier() for n in names)
        try:
            with _quiet():
                gm = onnx2torch.convert(model, save_input_names=keep_names).eval()
        except NotImplementedError as e:
            raise ConversionError(self.name(), f"onnx2torch cannot convert it: {_first(e)}") from None
        except Exception as e:  # noqa: BLE001  onnx2torch fails with KeyError etc. on some graphs
            raise ConversionError(self.name(), f"onnx2torch failed: {type(e).__name__}: {_first(e)}") from None
        args = tuple(torch.from_numpy(feed[n]) for n in names)
        from .onnx_static import set_outputs, specialize

        try:
            set_outputs(gm, model)
        except KeyError as e:
            raise ConversionError(self.name(), f"graph output {e} is no node's output (an input or a constant); "
                                  "onnx2torch cannot return it.") from None
        try:
            with torch.no_grad(), _quiet():
                before = _flat(gm(*args))
                gm, counts = specialize(gm, args)
                after = _flat(gm(*args))
        except Exception as e:  # noqa: BLE001
            raise ConversionError(self.name(), f"the onnx2torch module does not run at the fixed input shapes "
                                  f"({type(e).__name__}: {_first(e)})") from None
        _check_same(self.name(), before, after)
        if len(after) != len(src.outputs):
            raise ConversionError(self.name(), f"the module gives {len(after)} outputs, the ONNX graph "
                                  f"{len(src.outputs)}.")
        try:
            with _quiet():
                # by name when forward() has the ONNX input names: litert-torch's signature keeps them
                ep = torch.export.export(gm, (), dict(zip(names, args))) if keep_names else \
                    torch.export.export(gm, args)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(self.name(), f"torch.export failed on the onnx2torch module: {_first(e)}",
                                  "The graph keeps data-dependent shapes; another route may convert it.") from None
        path = out_dir / "model.pt2"
        torch.export.save(ep, str(path))
        ctx.notes.append(f"onnx2torch; shapes fixed at {', '.join(f'{n}:{_dims(feed[n].shape)}' for n in names)} "
                         f"({how}{'; ' + opset_note if opset_note else ''}); {counts['rewritten']} shape ops made "
                         f"static, {counts['folded']} values folded")
        return path

    def _check_ops(self, model):
        if uses_stand_in():
            for op in sorted(TORCHVISION_OPS & {n.op_type for n in model.graph.node}):
                raise UnsupportedOperator(self.name(), op, "onnx2torch converts it with torchvision, which does not "
                                          "import here")
        for op, opset in prep.unsupported(model):
            raise UnsupportedOperator(self.name(), op, f"onnx2torch 1.5.15 has no converter for it at opset {opset}")


def _examples(specs) -> dict:
    """One example per input at its fixed shape: random floats (so that a rewrite that changed the
    maths shows), zeros for integer inputs (valid indices)."""
    rng = np.random.default_rng(0)
    out = {}
    for s in specs:
        dtype = np.dtype(s.dtype)
        shape = s.fixed_shape()
        out[s.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
    return out


def _flat(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _check_same(edge, before, after) -> None:
    for i, (a, b) in enumerate(zip(before, after)):
        a, b = a.double(), b.double()
        scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
        if a.shape != b.shape or (a.numel() and float((a - b).abs().max()) > MAX_ABS_DRIFT * scale):
            raise ConversionError(edge, f"specializing the onnx2torch module to fixed shapes changed output {i}.")


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def _first(e) -> str:
    return next((ln.strip() for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)[:300]


def _quiet():
    """The frameworks log and warn at length: kept off the terminal (a real failure still raises)."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("torch.export", "torch._dynamo", "onnx2torch", "onnxsim")
