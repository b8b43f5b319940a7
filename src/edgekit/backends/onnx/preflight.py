"""Pre-flight knowledge of the onnx backend: an ONNX graph's operators (the facts every judge
reads), which operators are ONNX at all, and what ONNX Runtime, its float16 converter and its
quantizers do with each operator (``edgekit inspect``). No model is converted here."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .ops import STANDARD_DOMAINS

FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
# Ops that only move data: no arithmetic of their own to quantize (they carry what they are given).
MOVEMENT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Split", "Expand",
                "Tile"}
# Shape and bookkeeping ops: no float arithmetic to quantize or keep.
NEUTRAL_OPS = {"Shape", "Size", "Constant", "ConstantOfShape", "Identity", "Range", "Dropout", "Cast", "Equal",
               "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "NonZero"}


def facts(path: Path) -> dict:
    return onnx_facts(path)


def onnx_facts(path: Path) -> dict:
    """What the judges need from an ONNX file: ``counts`` ((domain, op_type) -> number of nodes,
    If/Loop/Scan bodies included, in order of first appearance, 'ai.onnx' written ''),
    ``int_inputs`` (integer model input -> dtype name) and ``int_casts`` (those of them whose
    values reach a Cast to float, e.g. an attention mask)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: dict = {}

    def visit(graph):
        for node in graph.node:
            key = ("" if node.domain == "ai.onnx" else node.domain, node.op_type)
            counts[key] = counts.get(key, 0) + 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    inits = {i.name for i in model.graph.initializer}
    int_inputs = {}
    for i in model.graph.input:
        t = i.type.tensor_type.elem_type
        if i.name not in inits and t and t not in FLOAT_TYPES:
            int_inputs[i.name] = onnx.helper.tensor_dtype_to_np_dtype(t).name
    return {"counts": counts, "int_inputs": int_inputs,
            "int_casts": _int_casts(model, int_inputs) if int_inputs else []}


def _int_casts(model, int_inputs: dict) -> list[str]:
    """Follow integer tensors from the integer model inputs (dtypes from shape inference) to the
    Casts that turn them into float; return the inputs they come from."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  > 2 GB, or an op shape inference does not know: follow with what is declared
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    origin = {name: {name} for name in int_inputs}  # integer tensor -> the model inputs it derives from
    found: list[str] = []
    for node in g.node:
        roots = set().union(*(origin.get(i, set()) for i in node.input))
        if not roots:
            continue
        if node.op_type == "Cast" and next((a.i for a in node.attribute if a.name == "to"), 0) in FLOAT_TYPES:
            found += [r for r in sorted(roots) if r not in found]
            continue
        for o in node.output:
            if types.get(o, 0) not in FLOAT_TYPES:  # an unknown type (0) stays on the trail
                origin[o] = roots
    return found


def check_op(domain: str, op: str) -> list[tuple[str, str]]:
    """A verdict before any edge is asked: an operator that is not ONNX at all."""
    import onnx

    if domain in ("", "ai.onnx.ml") and not onnx.defs.has(op, domain):
        return [("fail", f"not an ONNX operator{' in ' + domain if domain else ''} (onnx.defs)")]
    return []


def custom_domain(domain: str, edge: str) -> list[tuple[str, str]]:
    """What an edge that reads ONNX says of an operator outside the standard domains."""
    if domain in STANDARD_DOMAINS:
        return []
    return [("fail", f"custom domain '{domain}': {edge} takes standard ONNX domains only")]


def judge_runtime(domain: str, op: str, target, recipe, findings: list) -> list[tuple[str, str]]:
    """ONNX Runtime's word on an operator no edge has judged."""
    if findings:
        return []
    if domain not in STANDARD_DOMAINS:
        return [("fail", (f"custom domain '{domain}': ONNX Runtime has no kernel for it unless a custom-op "
                          f"library is registered"))]
    return [("ok", "ONNX Runtime contrib op" if domain == "com.microsoft" else "standard ONNX operator")]


@lru_cache(maxsize=None)
def ort_quantized(dynamic: bool) -> frozenset | None:
    """The default op lists of ONNX Runtime's quantize_dynamic / quantize_static (None: not installed)."""
    try:
        from onnxruntime.quantization import registry
    except ImportError:
        return None
    if dynamic:
        return frozenset(registry.IntegerOpsRegistry)
    return frozenset(registry.QLinearOpsRegistry) | frozenset(registry.QDQRegistry)


@lru_cache(maxsize=None)
def fp16_blocked() -> frozenset | None:
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    except ImportError:
        return None
    return frozenset(DEFAULT_OP_BLOCK_LIST)


def judge_quantizer(domain: str, op: str, recipe, edge: str) -> list[tuple[str, str]]:
    if domain not in STANDARD_DOMAINS:
        return custom_domain(domain, edge)
    dynamic = recipe.kind == "int8-dynamic"
    allowed = ort_quantized(dynamic)
    only = recipe.quantize_ops if not dynamic else ()
    how = "dynamic int8 (integer ops)" if dynamic else "static int8 (QDQ)"
    if op in NEUTRAL_OPS:
        return [("ok", "shape/bookkeeping op: nothing to quantize")]
    if op in MOVEMENT_OPS and (only or op not in (allowed or ())):
        return [("ok", "moves data: nothing to compute")]
    if only and op not in only:
        return [("float", f"the recipe quantizes only {', '.join(only)}: stays float")]
    if allowed is not None and op not in allowed:
        return [("float", f"ONNX Runtime's {how} quantizer does not quantize {op}: stays float")]
    if allowed is not None:
        return [("ok", f"quantized: {how}")]
    return []


def judge_fp16(domain: str, op: str, edge: str) -> list[tuple[str, str]]:
    if domain not in STANDARD_DOMAINS:
        return custom_domain(domain, edge)
    blocked = fp16_blocked()
    if blocked is not None and op in blocked:
        return [("float", "kept float32 by ONNX Runtime's float16 converter (op block list)")]
    return [("ok", "float16")]


def quantizer_notes() -> list[str]:
    return [] if ort_quantized(True) is not None else [
        "onnxruntime is not installed: its quantizer's coverage was not checked"]


def fp16_notes() -> list[str]:
    return [] if fp16_blocked() is not None else [
        "onnxruntime is not installed: its float16 converter's block list was not checked"]
