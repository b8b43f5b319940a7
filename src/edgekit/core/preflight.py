"""Pre-flight: before converting, list a model's operators and say, for the planned route to a
target, which of them the converters on that route and the target's runtime support.

    >>> r = inspect_model("examples/digits_cnn.py:build", "tflite-int8")
    >>> r["verdict"]
    'will convert'
    >>> print(format_preflight(r))

Operators are listed by the first format on the route whose backend can list them (its format's
``operators`` hook): read from the source file itself, or from the output of the route's first
edges, run through the conversion cache so that a later ``convert`` reuses them. What happens to
each operator is asked of every edge after that point (``Converter.judge``) and of the target's
runtime (its ``judge`` hook); a route that passes no such format is not inspected.

Each operator gets one status:

* ``ok``: converts, and runs at the recipe's precision;
* ``float``: converts, but computes in float (the quantizer leaves it alone, the fp16 converter
  blocks it, or dynamic int8 quantizes only weight-bearing ops);
* ``fallback``: the runtime has no kernel at the recipe's precision for what it becomes, so the
  converter keeps it float, and a target that rejects float kernels then rejects the route
  (``convert`` falls back to the next route if there is one, else fails);
* ``fail``: no converter or kernel on the route (an unknown operator, no converter for it, or
  the export itself fails).
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import EdgekitError
from .graph import Artifact, ConvertContext, plan
from .specs import get_recipe, get_target

STATUS_ORDER = ("fail", "fallback", "float", "ok")


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
    the_plan = plan(source.format, target, source=source)
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

    cut = _lister(route, source.format)
    if cut is None:
        result["verdict"] = (f"not inspected: the route {' -> '.join(route.names)} passes no format whose "
                             f"operators edgekit can list")
        return result
    try:
        facts, how = _facts_of(source, route, cut)
    except EdgekitError as e:  # an export on the way is the route's first edge: its failure is the answer
        op = getattr(e, "op", None)
        if op:
            result["ops"] = [{"op": op, "domain": "", "count": 1, "status": "fail",
                              "why": f"{getattr(e, 'edge', route.names[0])} cannot export it"}]
            result["summary"]["fail"] = 1
        text = re.sub(r"\x1b\[[0-9;]*m", "", e.one_line())  # exporters colour their messages
        result["verdict"] = (f"will fail: {text[:300]}"
                             + _then_tries(route, usable, source.format, ops_condemn=False))
        return result
    result["inspected"] = True
    result["notes"].append(how)
    rows, notes = _judge_all(facts, route, cut, source.format, target)
    result["ops"] = rows
    result["notes"] += notes
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

def _formats_along(route, source_format: str) -> list[str]:
    return [source_format] + [e.dst for e in route.edges]


def _lister(route, source_format: str) -> int | None:
    """How many of the route's edges run before the first format whose operators can be listed
    (0: the source itself), or None when the route passes none."""
    from ..backends import get_format

    return next((i for i, f in enumerate(_formats_along(route, source_format)) if get_format(f).operators), None)


def _format_hook(fmt_name: str, what: str):
    from ..backends import get_backend, get_format

    fmt = get_format(fmt_name)
    ref = getattr(fmt, what)
    return get_backend(fmt.backend).hook(ref) if ref else None


def _facts_of(source, route, cut: int) -> tuple[dict, str]:
    """The operator facts of the model at the route's listing point: read from the source file, or
    from the output of the route's first ``cut`` edges, cached like any conversion step."""
    if cut == 0:
        return _format_hook(source.format, "operators")(source.path), f"operators read from {Path(source.path).name}"
    from .convert import run_edge

    art = Artifact(source.format, source.digest, source.path, source.obj)
    none = get_recipe("none")
    for edge in route.edges[:cut]:  # no recipe on the way: the same cached steps a later convert reuses
        art, _ = run_edge(edge, art, ConvertContext(_plain_target(edge.dst, none), None, source))
    fmt = _formats_along(route, source.format)[cut]
    names = " -> ".join(e.name() for e in route.edges[:cut])
    return _format_hook(fmt, "operators")(art.path), f"operators of the route's {fmt} model (after {names})"


def _plain_target(fmt: str, recipe):
    """A recipe-free target of format ``fmt``, for running intermediate edges."""
    from .specs import all_targets

    return next((t for t in all_targets().values() if t.format == fmt and t.recipe == recipe.name),
                next(t for t in all_targets().values() if t.format == fmt))


def _judge_all(facts: dict, route, cut: int, source_format: str, target) -> tuple[list, list]:
    from ..backends import get_backend, get_runtime

    recipe = target.recipe_spec
    none = get_recipe("none")
    edges = list(route.edges[cut:])
    check = _format_hook(_formats_along(route, source_format)[cut], "operator_check")
    rt = get_runtime(target.runtime)
    rt_judge = get_backend(rt.backend).hook(rt.judge) if rt.judge else None
    rows = []
    for (domain, op), n in facts["counts"].items():
        findings = list(check(domain, op)) if check else []
        if not findings:
            for i, e in enumerate(edges):
                findings += e.judge(domain, op, target, recipe if i == len(edges) - 1 else none, facts)
            if rt_judge and not any(s == "fail" for s, _ in findings):
                findings += rt_judge(domain, op, target, recipe, findings)
        status = min((s for s, _ in findings), key=STATUS_ORDER.index, default="ok")
        whys = [w for s, w in findings if s == status]
        rows.append({"op": op, "domain": domain, "count": n, "status": status, "why": "; ".join(dict.fromkeys(whys))})
    notes = []
    for i, e in enumerate(edges):
        notes += e.preflight_notes(facts, target, recipe if i == len(edges) - 1 else none)
    return rows, list(dict.fromkeys(notes))


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
    mine = _judged_edges(route, source_format)
    others = [r for r in usable if r is not route
              and not (ops_condemn and mine is not None and _judged_edges(r, source_format) == mine)]
    if not others:
        return ""
    return "; convert would then try " + " | ".join(" -> ".join(r.names) for r in others) + " (not inspected)"


def _judged_edges(route, source_format: str) -> list[str] | None:
    cut = _lister(route, source_format)
    return None if cut is None else [e.name() for e in route.edges[cut:]]


def _name(row: dict) -> str:
    return f"{row['domain']}::{row['op']}" if row["domain"] else row["op"]
