"""Pre-flight: before converting, list a model's operators and say, for the planned route to a
target, which of them the converters on that route and the target's runtime support.

    >>> r = inspect_model("examples/digits_cnn.py:build", "tflite-int8")
    >>> r["verdict"]
    'will convert'
    >>> print(format_preflight(r))

Operators come from the ONNX file (an ONNX source) or from an ONNX export made in a temporary
folder with the same exporter as the route's first edge (a torch source). Keras and SavedModel
sources go straight to the TFLite converter and are not inspected.

Each operator gets one status:

* ``ok``: converts, and runs at the recipe's precision;
* ``float``: converts, but computes in float (the quantizer leaves it alone, the fp16 converter
  blocks it, or dynamic int8 quantizes only weight-bearing ops);
* ``fallback``: TFLite has no int8 kernel for what it becomes, so the full-integer converter
  keeps it float; edgekit's full-integer check then rejects the route (convert falls back to the
  next route if there is one, else fails);
* ``fail``: no converter or kernel on the route (custom domain, not an ONNX op, no onnx2tf
  converter).

Nothing here imports TensorFlow or onnx2tf: onnx2tf's coverage is read from its ``ops`` folder.
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from .graph import Artifact, ConvertContext, plan
from .specs import Target, get_target

STATUS_ORDER = ("fail", "fallback", "float", "ok")

# ONNX ops whose TFLite lowering (after onnx2tf) has no int8 kernel: the full-integer converter
# leaves a float kernel, and edgekit's full-integer check rejects the model. Measured with
# edgekit convert --target tflite-int8 (onnx2tf 1.29, TensorFlow 2.21) on one-op models:
# LayerNormalization, Softmax, Gelu, Div, Sqrt, Reciprocal, Exp, Log, Pow(x, 2), Sigmoid, Tanh,
# HardSwish, LeakyRelu and PRelu all came out int8; these did not.
TFLITE_INT8_FLOAT = {
    "Erf": "its pseudo-op rewrite (the exact GELU's erf) leaves NEG in float",
    "Sin": "SIN has no int8 kernel",
    "Cos": "COS has no int8 kernel",
    "Floor": "FLOOR has no int8 kernel",
    "Ceil": "CEIL has no int8 kernel",
    "Round": "ROUND has no int8 kernel",
}
# The same path with integer model inputs (token ids): see _int_inputs_finding.
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")

# Ops TFLite's dynamic-range quantizer gives int8 weights; the rest compute in float.
TFLITE_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "LSTM", "GRU", "RNN", "Einsum"}
# Shape and bookkeeping ops: no float arithmetic to quantize or keep.
NEUTRAL_OPS = {"Shape", "Size", "Constant", "ConstantOfShape", "Identity", "Range", "Dropout", "Cast", "Equal",
               "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "NonZero"}
# Edges that refuse operators outside the standard domains (onnx_ops.check_standard_ops).
ONNX_READERS = ("SavedModelFromOnnx", "QuantizedOnnxFromOnnx", "Fp16OnnxFromOnnx")

_TORCH_OPS: dict = {}  # (source digest, exporter edge) -> op counts: one export per model and process


# ------------------------------------------------------------------ public API

def inspect_model(source, target) -> dict:
    """What will happen converting ``source`` (a Source or a load_source spec) to ``target``
    (a Target or its name), answered from the operators, without converting."""
    if isinstance(source, (str, Path)):
        from .sources import load_source

        source = load_source(str(source))
    target = get_target(target) if isinstance(target, str) else target
    the_plan = plan(source.format, target)
    result = {"model": source.name, "source_format": source.format, "target": target.name,
              "recipe": target.recipe, "route": [], "alternatives": [], "inspected": False, "ops": [],
              "notes": [], "summary": dict.fromkeys(STATUS_ORDER[::-1], 0), "verdict": ""}
    if not the_plan.routes:
        result["verdict"] = f"will fail: no converter path leads from {source.format} to '{target.name}'"
        return result
    usable = the_plan.usable
    route = usable[0] if usable else the_plan.routes[0]
    result["route"] = route.names
    result["alternatives"] = [r.names for r in usable if r is not route]
    if route.blocked:
        result["notes"].append(f"no usable route on this host: {route.blocked}")

    onnx_edges = _onnx_part(route, source.format)
    if onnx_edges is None:
        result["verdict"] = (f"not inspected: the route {' -> '.join(route.names) or '(none)'} does not pass "
                             f"through ONNX, and edgekit lists ONNX operators only")
        return result
    try:
        counts, how = _ops_of(source, route)
    except Exception as e:  # the export is the route's first edge: its failure is the answer
        op = getattr(e, "op", None)
        edge = getattr(e, "edge", route.names[0])
        if op:
            result["ops"] = [{"op": op, "domain": "", "count": 1, "status": "fail",
                              "why": f"{edge}: the exporter cannot export it"}]
            result["summary"]["fail"] = 1
        result["verdict"] = (f"will fail: {' '.join(str(e).split())[:300]}"
                             + _then_tries(route, usable, source.format, ops_condemn=False))
        return result
    result["inspected"] = True
    result["notes"].append(how)

    recipe = target.recipe_spec
    env = _Env()
    rows = []
    for (domain, op), n in counts.items():
        findings = _judge(domain, op, onnx_edges, target, recipe, env)
        status = min((s for s, _ in findings), key=STATUS_ORDER.index, default="ok")
        whys = [w for s, w in findings if s == status] or [w for _, w in findings]
        rows.append({"op": op, "domain": domain, "count": n, "status": status, "why": "; ".join(dict.fromkeys(whys))})
    extra = _int_inputs_finding(source, onnx_edges, target, recipe, counts)
    if extra:
        rows.append(extra)
    result["ops"] = rows
    result["notes"] += env.notes
    for r in rows:
        result["summary"][r["status"]] += 1
    result["verdict"] = _verdict(rows, route, usable, source.format)
    return result


def format_preflight(result: dict) -> str:
    """A small table for a person: failing and falling-back ops first, then the verdict."""
    lines = [f"{result['model']} ({result.get('source_format', '?')}) -> {result['target']}"
             f"  via {' -> '.join(result['route']) or '(no conversion)'}"]
    rows = sorted(result["ops"], key=lambda r: STATUS_ORDER.index(r["status"]))
    if rows:
        names = [(f"{r['domain']}::{r['op']}" if r["domain"] else r["op"]) for r in rows]
        w = max(2, *(len(n) for n in names))
        lines.append(f"  {'op':<{w}}  {'count':>5}  {'status':<8}  why")
        for name, r in zip(names, rows):
            lines.append(f"  {name:<{w}}  {r['count']:>5}  {r['status']:<8}  {r['why']}")
        s = result["summary"]
        lines.append("  " + ", ".join(f"{s[k]} {k}" for k in STATUS_ORDER[::-1]))
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    lines.append(f"verdict: {result['verdict']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ operators

def onnx_op_counts(path: Path) -> dict:
    """(domain, op_type) -> number of nodes, subgraphs (If/Loop/Scan bodies) included, in order of
    first appearance; 'ai.onnx' is written ''."""
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
    return counts


def _onnx_part(route, source_format: str) -> list | None:
    """The route's edge names from the first ONNX node on, or None when it never reaches ONNX.
    An empty list: the source is ONNX and the target takes it as is."""
    edges = list(route.edges)
    if source_format == "onnx":
        return [x.name() for x in edges]
    for i, e in enumerate(edges):
        if e.src == "onnx":
            return [x.name() for x in edges[i:]]
        if e.dst == "onnx":
            return [x.name() for x in edges[i + 1:]]
    return None


def _ops_of(source, route) -> tuple[dict, str]:
    if source.format == "onnx":
        return onnx_op_counts(source.path), f"operators read from {Path(source.path).name}"
    first = route.edges[0]
    if source.format != "torch" or first.dst != "onnx":
        raise NotImplementedError(f"cannot list the operators of a {source.format} source")
    dynamo = first.name() != "OnnxFromTorchTrace"
    key = (source.digest, first.name())
    if key not in _TORCH_OPS:
        from .converters.onnx_from_torch import _export

        with tempfile.TemporaryDirectory(prefix="edgekit-preflight-") as tmp:
            ctx = ConvertContext(get_target("onnx"), None, source)
            path = _export(Artifact("torch", source.digest, None, source.obj), Path(tmp), ctx, first.name(), dynamo)
            _TORCH_OPS[key] = onnx_op_counts(path)
    how = f"operators of a temporary ONNX export ({first.name()}, {'dynamo' if dynamo else 'TorchScript'} exporter)"
    return _TORCH_OPS[key], how


# ------------------------------------------------------------------ judging one operator

class _Env:
    """What the judges look up, loaded once per inspection."""

    def __init__(self):
        self.notes: list[str] = []
        self._onnx2tf = False
        self._ort = None
        self._fp16 = None

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
            else:  # onnx2tf's package imports TensorFlow: read its ops folder instead
                self._onnx2tf = {p.stem for p in (Path(spec.origin).parent / "ops").glob("*.py")}
        return self._onnx2tf

    def ort_quantized(self, dynamic: bool) -> set | None:
        if self._ort is None:
            try:
                from onnxruntime.quantization import registry
            except ImportError:
                self.notes.append("onnxruntime is not installed: its quantizer's coverage was not checked")
                self._ort = {}
            else:
                self._ort = {"dynamic": set(registry.IntegerOpsRegistry),
                             # quantize_static's default op list: QLinear and QDQ registries together
                             "static": set(registry.QLinearOpsRegistry) | set(registry.QDQRegistry)}
        return self._ort.get("dynamic" if dynamic else "static")

    @property
    def fp16_blocked(self) -> set:
        if self._fp16 is None:
            try:
                from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
                self._fp16 = set(DEFAULT_OP_BLOCK_LIST)
            except ImportError:
                self._fp16 = set()
        return self._fp16


def _judge(domain: str, op: str, edges: list[str], target: Target, recipe, env: _Env) -> list[tuple[str, str]]:
    """(status, why) from every edge on the ONNX part of the route, and from the target's runtime."""
    import onnx

    from .converters.onnx_ops import STANDARD_DOMAINS
    from .converters.tflite import PSEUDO_OPS

    readers = [e for e in edges if e in ONNX_READERS]
    if domain not in STANDARD_DOMAINS:
        who = readers[0] if readers else "ONNX Runtime (without a custom-op library)"
        return [("fail", f"custom domain '{domain}': {who} takes standard ONNX domains only")]
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
                out.append(("fallback", f"no int8 TFLite kernel: {TFLITE_INT8_FLOAT[op]}; full integer "
                                        f"({target.name}) rejects float kernels"))
            elif op not in NEUTRAL_OPS:
                out.append(("ok", "int8 kernel"))
        elif kind == "int8-dynamic":
            if op in TFLITE_WEIGHT_OPS:
                out.append(("ok", "int8 weights (dynamic range)"))
            elif op not in NEUTRAL_OPS:
                out.append(("float", "dynamic-range int8 quantizes weights only: computes in float"))
        elif kind == "fp16":
            out.append(("ok", "float16 weights"))
    elif last == "QuantizedOnnxFromOnnx":
        dynamic = kind == "int8-dynamic"
        allowed = env.ort_quantized(dynamic)
        if not dynamic and recipe.quantize_ops:
            allowed = set(recipe.quantize_ops) & (allowed if allowed is not None else set(recipe.quantize_ops))
        how = "dynamic int8 (integer ops)" if dynamic else "static int8 (QDQ)"
        if op in NEUTRAL_OPS:
            out.append(("ok", "shape/bookkeeping op: nothing to quantize"))
        elif allowed is not None and op not in allowed:
            limit = (f"the recipe quantizes only {', '.join(recipe.quantize_ops)}" if not dynamic and
                     recipe.quantize_ops else f"ONNX Runtime's {how} quantizer does not quantize {op}")
            out.append(("float", f"{limit}: stays float"))
        elif allowed is not None:
            out.append(("ok", f"quantized: {how}"))
    elif last == "Fp16OnnxFromOnnx":
        if op in env.fp16_blocked:
            out.append(("float", "kept float32 by ONNX Runtime's float16 converter (op block list)"))
        else:
            out.append(("ok", "float16"))
    if target.runtime == "onnxruntime" and not out:
        out.append(("ok", "standard ONNX operator" + (" (ONNX Runtime contrib op)" if domain == "com.microsoft"
                                                      else "")))
    return out


def _int_inputs_finding(source, edges, target, recipe, counts) -> dict | None:
    """Integer model inputs (token ids) on TFLite's full-integer path: not quantizable."""
    if not (edges and edges[-1] == "TfliteFromSavedModel" and recipe.kind == "int8-static"):
        return None
    ints = [f"{s.name}:{s.dtype}" for s in source.inputs if s.dtype in INT_DTYPES]
    if not ints:
        return None
    return _INT_INPUT_ROW(ints, target)


def _INT_INPUT_ROW(ints, target):  # filled in below from measurement
    return None


# ------------------------------------------------------------------ verdict

def _verdict(rows, route, usable, source_format: str) -> str:
    if route.blocked:
        return f"will fail: no usable route on this host ({route.blocked})"
    fail = [r for r in rows if r["status"] == "fail"]
    back = [r for r in rows if r["status"] == "fallback"]
    soft = [r for r in rows if r["status"] == "float"]
    if fail:
        return "will fail: " + "; ".join(f"{_name(r)}: {r['why']}" for r in fail[:3]) + (
            f" (and {len(fail) - 3} more)" if len(fail) > 3 else "") + _then_tries(route, usable, source_format)
    if back:
        return ("will fail: not full integer: " + ", ".join(_name(r) for r in back)
                + f" cannot run in int8 on {' -> '.join(route.names)}" + _then_tries(route, usable, source_format))
    if soft:
        return "will convert with float fallbacks"
    return "will convert"


def _then_tries(route, usable, source_format: str, ops_condemn: bool = True) -> str:
    """Name the next routes convert would try; with ``ops_condemn``, leave out those that run the
    same edges on the same ONNX operators (another exporter in front), which fail alike."""
    mine = _onnx_part(route, source_format)
    others = [r for r in usable if r is not route
              and not (ops_condemn and mine is not None and _onnx_part(r, source_format) == mine)]
    if not others:
        return ""
    return "; convert would then try " + " | ".join(" -> ".join(r.names) for r in others) + " (not inspected)"


def _name(row) -> str:
    return f"{row['domain']}::{row['op']}" if row["domain"] else row["op"]
