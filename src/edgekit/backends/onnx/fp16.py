"""float16 that does not collapse: what fp16 cannot hold stays fp32, found from calibration data.

1. Range: the float model runs on calibration samples with every intermediate tensor exposed; a node
   whose outputs or inputs go beyond fp16's range (with headroom), or an exp-like op fed values so
   large that fp16's spacing changes its result, stays fp32.
2. Error: the fp16 model runs beside the float one on the same samples; while its outputs' cosine is
   below the aim, the nodes where the error jumps (output much worse than inputs) stay fp32 too.

``convert_float_to_float16`` casts around every blocked node, so a run of blocked nodes would still
pass through fp16 between them; ``merge_cast_pairs`` joins fp32 -> fp16 -> fp32 casts it inserted, so
what overflows fp16 never becomes fp16.
"""
from __future__ import annotations

from . import precision as P

ROUNDS = 4  # error rounds after the range pass
RANGE_SAMPLES = 32
CHECK_SAMPLES = 16
TRACE_SAMPLES = 8
PER_ROUND = 8


def to_fp16(model, block=()):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = onnx.ModelProto()
    m.CopyFrom(model)
    out = convert_float_to_float16(m, keep_io_types=True, node_block_list=list(block))
    if block:
        merge_cast_pairs(out)
    return out


def _to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def merge_cast_pairs(model) -> int:
    """Replace each inserted Cast(fp16 -> fp32) whose input an inserted Cast(fp32 -> fp16) made by an
    Identity of the fp32 tensor; drop the fp16 casts nothing reads any more. Returns pairs merged."""
    import onnx

    g = model.graph
    made = {n.output[0]: n for n in g.node if n.op_type == "Cast" and _to(n) == onnx.TensorProto.FLOAT16
            and (n.name.endswith("_cast_to_fp16_node") or n.name.startswith("graph_input_cast"))}
    merged = 0
    for n in g.node:
        if n.op_type == "Cast" and _to(n) == onnx.TensorProto.FLOAT and n.input[0] in made:
            src = made[n.input[0]].input[0]
            n.op_type, n.input[0] = "Identity", src
            del n.attribute[:]
            merged += 1
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in [n for n in g.node if n.output[0] in made and n.output[0] not in read]:
        g.node.remove(n)
    for v in [v for v in g.value_info if v.name in made and v.name not in read]:
        g.value_info.remove(v)
    return merged


def keep_fp32(model, data, aim: float):
    """(fp16 model, {node: why it stays fp32}, cosine before, cosine after, samples checked)."""
    P.name_nodes(model)
    sess = P.session(model)
    feeds = P.sample_feeds(sess, data, RANGE_SAMPLES)
    check = feeds[:CHECK_SAMPLES]
    ref = P.outputs(sess, check)
    plain = to_fp16(model)
    before = P.final_cosine(ref, P.outputs(P.session(plain), check))[0]
    why = P.fp16_range(model, feeds)
    nodes = P.top_nodes(model)
    by_name = {n.name: n for n in nodes}
    producer = {o: n for n in nodes for o in n.outputs}
    half, after = plain, before
    for r in range(ROUNDS + 1):
        if why or r:
            half = to_fp16(model, why)
            after = P.final_cosine(ref, P.outputs(P.session(half), check))[0]
        if after >= aim or r == ROUNDS:
            break
        errs = P.trace(model, half, feeds[:TRACE_SAMPLES])
        found = P.jumps(nodes, errs, floor=1e-3)
        found = [j for j in found if j[0] >= 0.25 * found[0][0]] if found else []
        added = 0
        for jump, name, e_in, e_out in found:
            # a node already fp32 whose result still jumps was fed too coarse a value: its producers
            blame = [name] if name not in why else [producer[i].name for i in by_name[name].inputs
                                                    if i in producer and producer[i].name not in why]
            for b in blame:
                why[b] = f"error: {e_in:.2g} -> {e_out:.2g}" + ("" if b == name else f" at {name}")
                added += 1
            if added >= PER_ROUND:
                break
        if not added:
            break
    return half, why, before, after, len(check)


def kept_note(why: dict, limit: int = 8) -> str:
    """One line: the nodes kept fp32 and why, grouped by reason."""
    parts = []
    for kind in ("range", "error"):
        named = [f"{n} ({w.split(': ', 1)[1]})" for n, w in why.items() if w.startswith(kind)]
        if named:
            more = f", +{len(named) - limit} more" if len(named) > limit else ""
            parts.append(f"{len(named)} by {kind}: " + ", ".join(named[:limit]) + more)
    return "kept fp32: " + "; ".join(parts)
