"""Read what a .tflite really runs: its kernels and their tensor types (not the file name)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

IO_OPS = {"QUANTIZE", "DEQUANTIZE"}


def kernels(path: Path) -> list[dict]:
    """Each op with the dtypes of its inputs and outputs, with no delegate folding them away."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    out = []
    for op in interp._get_ops_details():
        def types(idx):
            return [np.dtype(tensors[i]["dtype"]).name for i in idx if i >= 0 and i in tensors]

        out.append({"op": op["op_name"], "inputs": types(op["inputs"]), "outputs": types(op["outputs"])})
    return out


def float_kernels(path: Path) -> list[str]:
    """Ops that compute in float (QUANTIZE/DEQUANTIZE at the model's edges excepted)."""
    bad = []
    for k in kernels(path):
        if k["op"] in IO_OPS:
            continue
        if any(t.startswith("float") for t in k["outputs"]):
            bad.append(k["op"])
    return bad


def io_types(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return {"inputs": [np.dtype(d["dtype"]).name for d in interp.get_input_details()],
            "outputs": [np.dtype(d["dtype"]).name for d in interp.get_output_details()]}
