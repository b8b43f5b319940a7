"""Pre-flight knowledge of the tflite backend: what onnx2tf and the TFLite converter do with each
ONNX operator, measured (``edgekit inspect``). Nothing here imports TensorFlow or onnx2tf:
onnx2tf's coverage is read from its ``ops`` folder."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ..onnx.preflight import MOVEMENT_OPS, NEUTRAL_OPS, custom_domain

# ONNX ops whose TFLite lowering (after onnx2tf) has no int8 kernel: the full-integer converter
# leaves a float kernel, and edgekit's full-integer check rejects the model. Measured with
# `edgekit convert --target tflite-int8` (onnx2tf 1.29, TensorFlow 2.21) on one-op models
# MatMul -> op -> MatMul: LayerNormalization, Softmax, Gelu, Div, Sqrt, Reciprocal, Exp, Log,
# Pow(x, 2), Sigmoid, Tanh, Softplus, HardSwish, LeakyRelu, PRelu and Abs came out int8; these did not.
TFLITE_INT8_FLOAT = {
    "Erf": "onnx2tf's pseudo-op rewrite (-rtpo Erf, the exact GELU's erf) leaves a NEG",
    "Neg": "NEG has no int8 kernel",
    "Sign": "SIGN has no int8 kernel",
    "Sin": "SIN has no int8 kernel",
    "Cos": "COS has no int8 kernel",
    "Floor": "FLOOR has no int8 kernel",
    "Ceil": "CEIL has no int8 kernel",
    "Round": "ROUND has no int8 kernel",
    "CumSum": "CUMSUM has no int8 kernel",
    "Elu": "ELU has no int8 kernel",
}
# ... and the ops measured int8 there (the one-op models above, the digits CNN, an embedding).
TFLITE_INT8_MEASURED = {"MatMul", "Gemm", "Conv", "Relu", "MaxPool", "Reshape", "Add", "Mul", "Gather", "Abs",
                        "LayerNormalization", "Softmax", "Gelu", "Div", "Sqrt", "Reciprocal", "Exp", "Log", "Pow",
                        "Sigmoid", "Tanh", "Softplus", "HardSwish", "LeakyRelu", "PRelu"}
# Ops TFLite's dynamic-range quantizer gives int8 weights; the rest compute in float.
TFLITE_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "LSTM", "GRU", "RNN", "Einsum"}


@lru_cache(maxsize=None)
def onnx2tf_ops() -> frozenset | None:
    try:
        spec = importlib.util.find_spec("onnx2tf")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return None
    return frozenset(p.stem for p in (Path(spec.origin).parent / "ops").glob("*.py"))


def judge_onnx2tf(domain: str, op: str, edge: str, pseudo_ops) -> list[tuple[str, str]]:
    bad = custom_domain(domain, edge)
    if bad:
        return bad
    ops = onnx2tf_ops()
    if ops is not None and op not in ops:
        return [("fail", f"onnx2tf has no converter for it (no onnx2tf/ops/{op}.py)")]
    if op in pseudo_ops:
        return [("ok", f"onnx2tf rewrites it into builtin math (pseudo op, -rtpo {op})")]
    return [("ok", "onnx2tf converts it")]


def onnx2tf_notes() -> list[str]:
    return [] if onnx2tf_ops() is not None else ["onnx2tf is not installed: its operator coverage was not checked"]


def judge_tflite_converter(domain: str, op: str, target, recipe, facts: dict) -> list[tuple[str, str]]:
    kind = recipe.kind
    out = []
    if kind == "int8-static":
        if op in TFLITE_INT8_FLOAT:
            out.append(("fallback", (f"no int8 kernel: {TFLITE_INT8_FLOAT[op]}; the full-integer converter "
                                     f"keeps it float, and {target.name} rejects float kernels")))
        elif op in TFLITE_INT8_MEASURED:
            out.append(("ok", "int8 kernel"))
        elif op not in NEUTRAL_OPS:
            out.append(("ok", "int8 assumed (not among the ops known to stay float)"))
        if domain == "" and op == "Cast" and facts.get("int_casts"):
            # Integer model inputs (token ids) are not quantized: used as Gather indices they stay integer
            # and the model is still full integer (measured); but an integer input cast to float inside
            # the model (an attention mask) leaves that CAST in float (measured: "CAST run in float").
            names = ", ".join(f"{n} ({facts['int_inputs'][n]})" for n in facts["int_casts"])
            out.append(("fallback", (f"casts integer input {names} to float (an attention mask?): the full-integer "
                                     f"converter keeps that CAST float, and {target.name} rejects float kernels "
                                     f"(integer inputs used only as indices, like token ids into Gather, are fine)")))
    elif kind == "int8-dynamic":
        if op in TFLITE_WEIGHT_OPS:
            out.append(("ok", "int8 weights (dynamic range)"))
        elif op not in NEUTRAL_OPS | MOVEMENT_OPS:
            out.append(("float", "dynamic-range int8 quantizes weights only: computes in float"))
    elif kind == "fp16":
        out.append(("ok", "float16 weights"))
    return out


def tflite_converter_notes(facts: dict, recipe) -> list[str]:
    if recipe.kind == "int8-static" and facts.get("int_inputs") and not facts.get("int_casts"):
        names = ", ".join(f"{n} ({t})" for n, t in facts["int_inputs"].items())
        return [f"integer inputs {names} are not quantized and reach no Cast to float: they stay "
                f"integer in the artifact, and as indices (token ids into Gather) keep it full integer"]
    return []
