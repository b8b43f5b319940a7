"""Bring an ONNX graph to what onnx2torch 1.5.15 converts: fixed input shapes with the shape
arithmetic folded, an opset it knows, and no attribute it refuses where the attribute changes nothing."""
from __future__ import annotations

import contextlib
import importlib.util

import numpy as np

from ..onnx.graph_edits import constants_to_initializers

OPSET = 17  # onnx2torch 1.5.15 has no converter for the opset-18 Resize, Pad, Split and Reduce* versions
HIDDEN = "edgekit.hidden"  # a domain the version converter leaves alone

__all__ = ["constants_to_initializers", "drop_idle_allowzero", "fit_opset", "fix_shapes", "unsupported"]


def fix_shapes(model, specs, quiet=contextlib.nullcontext):
    """Fix every input at its fixed shape and fold what that makes constant (shape chains): onnxsim,
    else ONNX shape inference. Returns the model and what did it."""
    from onnx import shape_inference

    shapes = {s.name: list(s.fixed_shape()) for s in specs}
    if importlib.util.find_spec("onnxsim") is not None:
        try:
            import onnxsim

            with quiet():
                simplified, ok = onnxsim.simplify(model, overwrite_input_shapes=shapes, initializers_as_constants=False)
            if ok:
                return simplified, "onnxsim"
        except Exception:  # noqa: BLE001  onnxsim fails on some graphs: the shapes are still fixed below
            pass
    for value in model.graph.input:
        if value.name in shapes:
            for d, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                d.Clear()
                d.dim_value = size
    try:
        return shape_inference.infer_shapes(model, data_prop=True), "ONNX shape inference"
    except Exception:  # noqa: BLE001
        return model, "shapes fixed, no shape inference"


def unsupported(model) -> list[tuple[str, int]]:
    """(op, opset) of the nodes onnx2torch has no converter for at the model's opsets."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {_std(o.domain): o.version for o in model.opset_import}
    bad = []
    for n in model.graph.node:
        domain = _std(n.domain)
        try:
            get_converter(n.op_type, opsets.get(domain, 1), domain)
        except NotImplementedError:
            if (n.op_type, opsets.get(domain, 1)) not in bad:
                bad.append((n.op_type, opsets.get(domain, 1)))
    return bad


def fit_opset(model):
    """Down-convert to ``OPSET`` when onnx2torch lacks a converter at the model's opset. Split-18
    (``num_outputs``) has no down-adapter in ONNX: such nodes get explicit sizes (from the fixed
    shapes), which Split-13 reads the same, and are hidden from the version converter. Returns
    the model and a note (None when nothing changed)."""
    from onnx import helper, numpy_helper, shape_inference, version_converter

    default = next((o.version for o in model.opset_import if _std(o.domain) == ""), None)
    if default is None or default <= OPSET or not unsupported(model):
        return model, None
    work = type(model)()
    work.CopyFrom(model)
    try:
        work = shape_inference.infer_shapes(work)
    except Exception:  # noqa: BLE001  the sizes below then stay unknown
        pass
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in list(work.graph.value_info) + list(work.graph.input)}
    for n in work.graph.node:
        if n.op_type != "Split" or _std(n.domain) != "":
            continue
        num = next((a.i for a in n.attribute if a.name == "num_outputs"), None)
        if num is not None:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            size = (dims.get(n.input[0]) or [None] * (abs(axis) + 1))[axis]
            if size is None:
                return model, None
            chunk = -(-size // num)
            name = f"{n.output[0]}_edgekit_split"
            work.graph.initializer.append(numpy_helper.from_array(
                np.array([chunk] * (num - 1) + [size - chunk * (num - 1)], np.int64), name))
            del n.input[1:]
            n.input.append(name)
            n.attribute.remove(next(a for a in n.attribute if a.name == "num_outputs"))
        n.domain = HIDDEN
    work.opset_import.append(helper.make_opsetid(HIDDEN, 1))
    try:
        out = version_converter.convert_version(work, OPSET)
    except Exception:  # noqa: BLE001  no adapter for some op: keep the model, the caller names what is missing
        return model, None
    for n in out.graph.node:
        if n.domain == HIDDEN:
            n.domain = ""
    for o in [o for o in out.opset_import if o.domain == HIDDEN]:
        out.opset_import.remove(o)
    return out, f"opset {default} -> {OPSET}"


def drop_idle_allowzero(model) -> None:
    """``Reshape(allowzero=1)`` (the dynamo exporter writes it) only differs from the default when the
    shape holds a 0; onnx2torch refuses the attribute, so drop it where the shape is a constant
    without zeros."""
    from onnx import numpy_helper

    consts = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    for n in model.graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2 or n.input[1] not in consts:
            continue
        if 0 in numpy_helper.to_array(consts[n.input[1]]).tolist():
            continue
        for a in list(n.attribute):
            if a.name == "allowzero":
                n.attribute.remove(a)


def _std(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
