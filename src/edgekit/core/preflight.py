"""Pre-flight: before converting, list a model's operators and say, for the planned route to a
target, which of them the converters on that route and the target's runtime support.

    >>> r = inspect_model("examples/digits_cnn.py:build", "tflite-int8")
    >>> r["verdict"]
    'will convert'
    >>> print(format_preflight(r))

Operators come from the ONNX file (an ONNX source) or from the ONNX export of the route's first
edge (a torch source), run through the conversion cache so that a later ``convert`` reuses it.
Keras and SavedModel sources go straight to the TFLite converter and are not inspected.

Each operator gets one status:

* ``ok``: converts, and runs at the recipe's precision;
* ``float``: converts, but computes in float (the quantizer leaves it alone, the fp16 converter
  blocks it, or dynamic int8 quantizes only weight-bearing ops);
* ``fallback``: TFLite has no int8 kernel for what it becomes, so the full-integer converter
  keeps it float; edgekit's full-integer check then rejects the route (``convert`` falls back to
  the next route if there is one, else fails);
* ``fail``: no converter or kernel on the route (custom domain, not an ONNX op, no onnx2tf
  converter, or the export itself fails).

Nothing here imports TensorFlow or onnx2tf: onnx2tf's coverage is read from its ``ops`` folder.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from .errors import EdgekitError
from .graph import Artifact, ConvertContext, plan
from .specs import Target, get_target

STATUS_ORDER = ("fail", "fallback", "float", "ok")

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
# Integer model inputs (token ids) are not quantized: used as Gather indices they stay integer and
# the model is still full integer (measured: an int64-ids embedding converts to tflite-int8 and
# tflite-int8-io); but an integer input cast to float inside the model (an attention mask)
# leaves that CAST in float (measured: "CAST run in float").
FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16

# Ops TFLite's dynamic-range quantizer gives int8 weights; the rest compute in float.
TFLITE_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "LSTM", "GRU", "RNN", "Einsum"}
# Ops that only move data: no arithmetic of their own to quantize (they carry what they are given).
MOVEMENT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Split", "Expand",
                "Tile"}
# Shape and bookkeeping ops: no float arithmetic to quantize or keep.
NEUTRAL_OPS = {"Shape", "Size", "Constant", "ConstantOfShape", "Identity", "Range", "Dropout", "Cast", "Equal",
               "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "NonZero"}
# Edges that refuse operators outside the standard domains (onnx_ops.check_standard_ops).
ONNX_READERS = ("SavedModelFromOnnx", "QuantizedOnnxFromOnnx", "Fp16OnnxFromOnnx")



# ------------------------------------------------------------------ public API

def inspect_model(source, target) -> dict:
    """What converting ``source`` (a Source, or a spec for load_source) to ``target`` (a Target or
    its name) will meet, answered from the model's operators without converting.

    Returns {"model", "source_format", "target", "recipe", "route" (edge names of the planned
    route), "alternatives" (the other usable routes, tried in turn if it fails), "inspected",
    "ops": [{"op", "domain", "count", "status", "why"}], "summary": {status: number of op types},
    "notes", "verdict"}; the verdict is "will convert", "will convert with float fallbacks",
    "will fail: <why>" or "not inspected: <why>".
    """
    if isinstance(source, (str, Path)):
        from .sources import load_source

        source = load_source(str(source))
    target = get_target(target) if isinstance(target, str) else target
    the_plan = plan(source.format, target)
    result = {"model": source.name, "source_format": source.format, "target": target.name,
              "recipe": target.recipe, "route": [], "alternatives": [], "inspected": False, "ops": [],
              "summary": dict.fromkeys(STATUS_ORDER[::-1], 0), "notes": [], "verdict": ""}
    if not the_plan.routes:
        result["verdict"] = f"will fail: no converter path leads from {source.format} to '{target.name}'"
        return result
    usable = the_plan.usable
    route = usable[0] if usable else the_plan.routes[0]
    result["route"] = route.names
    result["alternatives"] = [r.names for r in usable if r is not route]

    onnx_edges = _onnx_part(route, source.format)
    if onnx_edges is None:
        result["verdict"] = (f"not inspected: the route {' -> '.join(route.names)} does not pass through ONNX, "
                             f"and edgekit lists ONNX operators only")
        return result
    try:
        facts, how = _facts_of(source, route)
    except EdgekitError as e:  # the export is the route's first edge: its failure is the answer
        op = getattr(e, "op", None)
        if op:
            result["ops"] = [{"op": op, "domain": "", "count": 1, "status": "fail",
                              "why": f"{getattr(e, 'edge', route.names[0])} cannot export it"}]
            result["summary"]["fail"] = 1
        text = re.sub(r"\x1b\[[0-9;]*m", "", e.one_line())  # the exporter colours its messages
        result["verdict"] = (f"will fail: {text[:300]}"
                             + _then_tries(route, usable, source.format, ops_condemn=False))
        return result
    result["inspected"] = True
    result["notes"].append(how)

    recipe = target.recipe_spec
    env = _Env()
    rows = []
    for (domain, op), n in facts["counts"].items():
        findings = _judge(domain, op, onnx_edges, target, recipe, env)
        if domain == "" and op == "Cast":
            findings += _int_cast_findings(facts, onnx_edges, target, recipe)
        status = min((s for s, _ in findings), key=STATUS_ORDER.index, default="ok")
        whys = [w for s, w in findings if s == status]
        rows.append({"op": op, "domain": domain, "count": n, "status": status, "why": "; ".join(dict.fromkeys(whys))})
    if facts["int_inputs"] and not facts["int_casts"] and _full_integer_tflite(onnx_edges, recipe):
        names = ", ".join(f"{n} ({t})" for n, t in facts["int_inputs"].items())
        env.notes.append(f"integer inputs {names} are not quantized and reach no Cast to float: they stay "
                         f"integer in the artifact, and as indices (token ids into Gather) keep it full integer")
    result["ops"] = rows
    result["notes"] += env.notes
    if route.blocked:
        result["notes"].append(f"no usable route on this host: {route.blocked}")
    for r in rows:
        result["summary"][r["status"]] += 1
    result["verdict"] = _verdict(rows, route, usable, source.format)
    return result


def format_preflight(result: dict) -> str:
    """A small table for a person (failing and falling-back ops first), the notes, the verdict."""
    route = " -> ".join(result["route"]) or "(no conversion)"
    lines = [f"{result['model']} ({result.get('source_format', '?')}) -> {result['target']} via {route}"]
    rows = sorted(result["ops"], key=lambda r: STATUS_ORDER.index(r["status"]))
    if rows:
        names = [_name(r) for r in rows]
        w = max(len("op"), *(len(n) for n in names))
        lines.append(f"  {'op':<{w}}  {'count':>5}  {'status':<8}  why")
        for name, r in zip(names, rows):
            lines.append(f"  {name:<{w}}  {r['count']:>5}  {r['status']:<8}  {r['why']}".rstrip())
        s = result["summary"]
        lines.append("  " + ", ".join(f"{s[k]} {k}" for k in STATUS_ORDER[::-1]) + " (operator types)")
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    lines.append(f"verdict: {result['verdict']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ the model's operators

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


def _onnx_part(route, source_format: str) -> list | None:
    """The route's edge names after its ONNX node (all of them for an ONNX source: [] when the
    target takes the file as is), or None when the route never reaches ONNX."""
    edges = list(route.edges)
    if source_format == "onnx":
        return [x.name() for x in edges]
    for i, e in enumerate(edges):
        if e.dst == "onnx":
            return [x.name() for x in edges[i + 1:]]
    return None


def _facts_of(source, route) -> tuple[dict, str]:
    """The ONNX facts of the model: read from an ONNX source, or from a temporary export by the
    route's first edge (a torch source), cached like any conversion step."""
    if source.format == "onnx":
        return onnx_facts(source.path), f"operators read from {Path(source.path).name}"
    first = route.edges[0]  # _onnx_part found ONNX: a torch source's first edge exports to it
    dynamo = first.name() != "OnnxFromTorchTrace"
    # the route's own first step, through the conversion cache: a later `convert` reuses this export
    from .convert import run_edge

    onnx_art, _ = run_edge(first, Artifact("torch", source.digest, None, source.obj),
                           ConvertContext(get_target("onnx"), None, source))
    facts = onnx_facts(onnx_art.path)
    how = f"operators of the route's ONNX export ({first.name()}, {'dynamo' if dynamo else 'TorchScript'} exporter)"
    return facts, how


# ------------------------------------------------------------------ judging one operator

class _Env:
    """What the judges look up, loaded once per inspection (no TensorFlow, no onnx2tf import)."""

    def __init__(self):
        self.notes: list[str] = []
        self._onnx2tf: set | None | bool = False
        self._ort: dict | None = None
        self._fp16: set | None = None

    @property
    def onnx2tf_ops(self) -> set | None:
        if self._onnx2tf is False:
            self._onnx2tf = None
            try:
                spec = importlib.util.find_spec("onnx2tf")
            except (ImportError, ValueError):
                spec = None
            if spec is None or not spec.origin:
                self.notes.append("onnx2tf is not installed: its operator coverage was not checked")
            else:  # importing onnx2tf imports TensorFlow: read its ops folder instead
                self._onnx2tf = {p.stem for p in (Path(spec.origin).parent / "ops").glob("*.py")}
        return self._onnx2tf

    def ort_quantized(self, dynamic: bool) -> set | None:
        if self._ort is None:
            try:
                from onnxruntime.quantization import registry
            except ImportError:
                self.notes.append("onnxruntime is not installed: its quantizer's coverage was not checked")
                self._ort = {}
            else:  # the default op lists of quantize_dynamic and quantize_static
                self._ort = {"dynamic": set(registry.IntegerOpsRegistry),
                             "static": set(registry.QLinearOpsRegistry) | set(registry.QDQRegistry)}
        return self._ort.get("dynamic" if dynamic else "static")

    @property
    def fp16_blocked(self) -> set:
        if self._fp16 is None:
            try:
                from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
            except ImportError:
                self.notes.append("onnxruntime is not installed: its float16 converter's block list was not checked")
                DEFAULT_OP_BLOCK_LIST = ()
            self._fp16 = set(DEFAULT_OP_BLOCK_LIST)
        return self._fp16


def _judge(domain: str, op: str, edges: list[str], target: Target, recipe, env: _Env) -> list[tuple[str, str]]:
    """(status, why) from each edge after the route's ONNX node, and from the target's runtime."""
    import onnx

    from ..backends.onnx.ops import STANDARD_DOMAINS
    from ..backends.tflite.converters import PSEUDO_OPS

    if domain not in STANDARD_DOMAINS:
        readers = [e for e in edges if e in ONNX_READERS]
        if readers:
            return [("fail", f"custom domain '{domain}': {readers[0]} takes standard ONNX domains only")]
        return [("fail", (f"custom domain '{domain}': ONNX Runtime has no kernel for it unless a custom-op "
                          f"library is registered"))]
    if domain in ("", "ai.onnx.ml") and not onnx.defs.has(op, domain):
        return [("fail", f"not an ONNX operator{' in ' + domain if domain else ''} (onnx.defs)")]
    out: list[tuple[str, str]] = []
    last = edges[-1] if edges else None
    kind = recipe.kind

    if "SavedModelFromOnnx" in edges:
        ops = env.onnx2tf_ops
        if ops is not None and op not in ops:
            return [("fail", f"onnx2tf has no converter for it (no onnx2tf/ops/{op}.py)")]
        if op in PSEUDO_OPS:
            out.append(("ok", f"onnx2tf rewrites it into builtin math (pseudo op, -rtpo {op})"))
        else:
            out.append(("ok", "onnx2tf converts it"))
    if last == "TfliteFromSavedModel":
        if kind == "int8-static":
            if op in TFLITE_INT8_FLOAT:
                out.append(("fallback", (f"no int8 kernel: {TFLITE_INT8_FLOAT[op]}; the full-integer converter "
                                         f"keeps it float, and {target.name} rejects float kernels")))
            elif op in TFLITE_INT8_MEASURED:
                out.append(("ok", "int8 kernel"))
            elif op not in NEUTRAL_OPS:
                out.append(("ok", "int8 assumed (not among the ops known to stay float)"))
        elif kind == "int8-dynamic":
            if op in TFLITE_WEIGHT_OPS:
                out.append(("ok", "int8 weights (dynamic range)"))
            elif op not in NEUTRAL_OPS | MOVEMENT_OPS:
                out.append(("float", "dynamic-range int8 quantizes weights only: computes in float"))
        elif kind == "fp16":
            out.append(("ok", "float16 weights"))
    elif last == "QuantizedOnnxFromOnnx":
        dynamic = kind == "int8-dynamic"
        allowed = env.ort_quantized(dynamic)
        only = recipe.quantize_ops if not dynamic else ()
        how = "dynamic int8 (integer ops)" if dynamic else "static int8 (QDQ)"
        if op in NEUTRAL_OPS:
            out.append(("ok", "shape/bookkeeping op: nothing to quantize"))
        elif op in MOVEMENT_OPS and (only or op not in (allowed or ())):
            out.append(("ok", "moves data: nothing to compute"))
        elif only and op not in only:
            out.append(("float", f"the recipe quantizes only {', '.join(only)}: stays float"))
        elif allowed is not None and op not in allowed:
            out.append(("float", f"ONNX Runtime's {how} quantizer does not quantize {op}: stays float"))
        elif allowed is not None:
            out.append(("ok", f"quantized: {how}"))
    elif last == "Fp16OnnxFromOnnx":
        if op in env.fp16_blocked:
            out.append(("float", "kept float32 by ONNX Runtime's float16 converter (op block list)"))
        else:
            out.append(("ok", "float16"))
    if target.runtime == "onnxruntime" and not out:
        out.append(("ok", "ONNX Runtime contrib op" if domain == "com.microsoft" else "standard ONNX operator"))
    return out


def _full_integer_tflite(edges: list, recipe) -> bool:
    return bool(edges) and edges[-1] == "TfliteFromSavedModel" and recipe.kind == "int8-static"


def _int_cast_findings(facts: dict, edges: list, target: Target, recipe) -> list[tuple[str, str]]:
    """On TFLite's full-integer path, a Cast of an integer model input to float stays float."""
    if not (facts["int_casts"] and _full_integer_tflite(edges, recipe)):
        return []
    names = ", ".join(f"{n} ({facts['int_inputs'][n]})" for n in facts["int_casts"])
    return [("fallback", (f"casts integer input {names} to float (an attention mask?): the full-integer "
                          f"converter keeps that CAST float, and {target.name} rejects float kernels (integer "
                          f"inputs used only as indices, like token ids into Gather, are fine)"))]


# ------------------------------------------------------------------ verdict

def _verdict(rows: list, route, usable: list, source_format: str) -> str:
    if route.blocked:
        return f"will fail: no usable route on this host ({route.blocked})"
    fail = [r for r in rows if r["status"] == "fail"]
    back = [r for r in rows if r["status"] == "fallback"]
    if fail:
        more = f" (and {len(fail) - 3} more)" if len(fail) > 3 else ""
        return ("will fail: " + "; ".join(f"{_name(r)}: {r['why']}" for r in fail[:3]) + more
                + _then_tries(route, usable, source_format))
    if back:
        return ("will fail: not full integer: " + ", ".join(_name(r) for r in back)
                + f" cannot run in int8 on {' -> '.join(route.names)}" + _then_tries(route, usable, source_format))
    if any(r["status"] == "float" for r in rows):
        return "will convert with float fallbacks"
    return "will convert"


def _then_tries(route, usable: list, source_format: str, ops_condemn: bool = True) -> str:
    """Name the next routes ``convert`` would try; with ``ops_condemn``, leave out those that run the
    same edges on the same ONNX operators (another exporter in front), which fail alike."""
    mine = _onnx_part(route, source_format)
    others = [r for r in usable if r is not route
              and not (ops_condemn and mine is not None and _onnx_part(r, source_format) == mine)]
    if not others:
        return ""
    return "; convert would then try " + " | ".join(" -> ".join(r.names) for r in others) + " (not inspected)"


def _name(row: dict) -> str:
    return f"{row['domain']}::{row['op']}" if row["domain"] else row["op"]
