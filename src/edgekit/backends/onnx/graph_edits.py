"""Edits of an ONNX graph that change how converters read it, not what it computes."""
from __future__ import annotations

import numpy as np


def constants_to_initializers(model) -> int:
    """Constant nodes (how some exporters, paddle2onnx among them, store weights and scalars) as
    initializers, in place; returns how many. onnx2torch reads Conv/Gemm/BatchNorm weights from the
    initializers only (KeyError otherwise), and onnx2tf's accuracy correction fails on a scalar Constant
    added to a tensor with repeated dimensions ("Output tensors of a Functional model must be the
    output of a TensorFlow Layer ... Found: 3.0")."""
    from onnx import numpy_helper

    if model.ir_version < 4:  # initializers must then be graph inputs too: leave such old graphs alone
        return 0
    kinds = {"value": lambda a: numpy_helper.to_array(a.t), "value_float": lambda a: np.array(a.f, np.float32),
             "value_floats": lambda a: np.array(list(a.floats), np.float32),
             "value_int": lambda a: np.array(a.i, np.int64), "value_ints": lambda a: np.array(list(a.ints), np.int64)}
    moved = []
    for n in model.graph.node:
        if n.op_type == "Constant" and _std(n.domain) == "" and len(n.attribute) == 1 and n.attribute[0].name in kinds:
            model.graph.initializer.append(numpy_helper.from_array(kinds[n.attribute[0].name](n.attribute[0]),
                                                                   n.output[0]))
            moved.append(n)
    for n in moved:
        model.graph.node.remove(n)
    return len(moved)


def _std(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
