"""int8 that says what it quantized and does not collapse.

``quantized_counts``: per op type, how many nodes the quantizer turned into integer (or QDQ) form,
out of how many the float model has, in the top graph and inside If/Loop/Scan bodies apart (the
ONNX Runtime quantizers leave those bodies float).

``repair``: the quantized model runs beside the float one on calibration samples; while its outputs'
cosine is below the floor, the layers responsible are found and kept float (``nodes_to_exclude``):
- activations whose quantize/dequantize pair loses most (measured on the int8 model's own values, so
  an earlier layer's error does not count): their producer and consumers stay float;
- quantized nodes where the error against the float model jumps (e.g. a MatMul whose weights do
  not survive a per-tensor scale).
A few rounds; the caller refuses what still collapses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import precision as P

ROUNDS = 4
CHECK_SAMPLES = 16
TRACE_SAMPLES = 4
NOISE_FLOOR = 0.05  # an activation's own int8 error below this is what int8 costs anyway
TENSORS_PER_ROUND, NODES_PER_ROUND = 8, 4
TRIM_ABOVE = 8  # a round that reaches the aim with more layers float than this tries half of them
# what the quantizers put in a node's place (besides QLinear*), named after the node they replace
INTEGER_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger", "QGemm", "QAttention",
               "DynamicQuantizeLSTM", "QEmbedLayerNormalization", "QOrderedMatMul"}
LINEAR = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Attention", "LSTM", "GRU", "RNN")
INT_INIT = {2, 3, 6}  # UINT8, INT8, INT32 initializers: quantized weights and biases


def _bodies(node):
    for a in node.attribute:
        if a.g is not None and a.g.node:
            yield a.g
        yield from a.graphs


def _float_names(model) -> set[str]:
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    out = set()

    def visit(graph):
        for v in list(graph.value_info) + list(graph.input) + list(graph.output):
            if v.type.tensor_type.elem_type in P.FLOAT_TYPES:
                out.add(v.name)
        out.update(i.name for i in graph.initializer if i.data_type in P.FLOAT_TYPES)
        for n in graph.node:
            for g in _bodies(n):
                visit(g)

    visit(model.graph)
    return out


def _integer(op: str) -> bool:
    return op in INTEGER_OPS or op.startswith("QLinear")


def quantized_counts(float_model, q_model) -> dict:
    """{"top": {op: [quantized, total]}, "sub": {...}}, by the float model's nodes: a node counts as
    quantized if the quantizer replaced it by integer ops (named after it) or every float input it
    reads is dequantized int8. Bodies are matched through the If/Loop/Scan node of the same name."""
    floats = _float_names(float_model)
    out = {"top": {}, "sub": {}}

    def visit(fgraph, qgraph, where, outer_dq, outer_int):
        by_name = {n.name: n for n in qgraph.node} if qgraph is not None else {}
        names = sorted({n.name for n in fgraph.node}, key=len, reverse=True)
        replaced = {next((f for f in names if q == f or q.startswith(f + "_")), None)  # the longest name it extends
                    for q in by_name if _integer(by_name[q].op_type)}
        dq = set(outer_dq) | {n.output[0] for n in by_name.values() if n.op_type == "DequantizeLinear"}
        ints = set(outer_int) | ({i.name for i in qgraph.initializer if i.data_type in INT_INIT}
                                 if qgraph is not None else set())
        for fn in fgraph.node:
            qn = by_name.get(fn.name)
            if qn is not None and qn.op_type == fn.op_type:
                quant = [i for i in qn.input if i in dq or i in ints]
                plain = [i for i in qn.input if i and i not in dq and i not in ints and i in floats]
                done = bool(quant) and not plain
                q_bodies = {a.name: a for a in qn.attribute}
            else:  # replaced: by integer ops named after it, or by something else (left float)
                done = fn.name in replaced
                q_bodies = {}
            row = out[where].setdefault(fn.op_type, [0, 0])
            row[0] += done
            row[1] += 1
            for a in fn.attribute:
                qa = q_bodies.get(a.name)
                if a.g is not None and a.g.node:
                    visit(a.g, qa.g if qa is not None else None, "sub", dq, ints)
                for k, g in enumerate(a.graphs):
                    visit(g, qa.graphs[k] if qa is not None and k < len(qa.graphs) else None, "sub", dq, ints)

    visit(float_model.graph, q_model.graph, "top", set(), set())
    return out


def counts_note(counts: dict) -> str:
    """One line: quantized/total per op type (those quantized at all, and every linear op)."""
    def part(c):
        rows = sorted(((op, q, n) for op, (q, n) in c.items() if q or op in LINEAR), key=lambda r: (-r[2], r[0]))
        return ", ".join(f"{op} {q}/{n}" for op, q, n in rows) or "nothing"

    top = counts["top"]
    line = (f"quantized {sum(q for q, _ in top.values())} of {sum(n for _, n in top.values())} nodes: "
            f"{part(top)}")
    sub = counts["sub"]
    if sub:
        q_sub = sum(q for q, _ in sub.values())
        line += (f"; inside If/Loop/Scan bodies {q_sub} of {sum(n for _, n in sub.values())}: {part(sub)}"
                 + (" (the quantizer leaves bodies float)" if not q_sub else ""))
    return line


def n_quantized(counts: dict) -> int:
    return sum(q for c in counts.values() for q, _ in c.values())


def qdq_pairs(q_model) -> dict[str, str]:
    """Top graph: dequantized activation -> the float tensor its quantize/dequantize pair stands for."""
    made = {n.output[0]: n for n in q_model.graph.node if n.op_type == "QuantizeLinear"}
    return {n.output[0]: made[n.input[0]].input[0] for n in q_model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in made}


def involved(q_model, nodes: list) -> set[str]:
    """Names of the float model's top-graph nodes the quantizer replaced or feeds int8 values."""
    by_name = {n.name: n for n in q_model.graph.node}
    dq = {n.output[0] for n in q_model.graph.node if n.op_type == "DequantizeLinear"}
    ints = {i.name for i in q_model.graph.initializer if i.data_type in INT_INIT}
    out = set()
    for n in nodes:
        m = by_name.get(n.name)
        if m is None or m.op_type != n.op or any(i in dq or i in ints for i in m.input):
            out.add(n.name)
    return out


def qdq_noise(q_model, pairs: dict, feeds: list[dict]) -> dict[str, float]:
    """Each quantized activation's own error: its dequantized value against its value in the same
    int8 model (what the pair loses, not what earlier layers lost)."""
    names = sorted(set(pairs) | set(pairs.values()))
    sess = P.session(P.exposed(q_model, names), plain=True)
    total: dict[str, float] = {}
    for f in feeds:
        got = dict(zip(names, sess.run(names, f)))
        for d, t in pairs.items():
            total[t] = total.get(t, 0.0) + P.tensor_error(got[t], got[d]) / len(feeds)
    return total


def _float_group(tensor: str, producer: dict, consumers: dict, through=P.LAYOUT) -> list[str]:
    """The nodes to keep float so that ``tensor`` is not quantized: its producer and every consumer,
    through the ops ``through`` (data movement by default: the quantizer gives them their input's
    quantization)."""
    out = [producer[tensor].name] if tensor in producer else []
    todo, seen = [tensor], {tensor}
    while todo:
        for c in consumers.get(todo.pop(), []):
            out.append(c.name)
            if c.op in through:
                for o in c.outputs:
                    if o not in seen:
                        seen.add(o)
                        todo.append(o)
    return list(dict.fromkeys(out))


def _culprits(pre, q_model, nodes, feeds, skip: set, level: int = 0) -> dict[str, str]:
    """One round: {node name: why} for the layers to keep float next. ``level`` > 0 when the last
    round did not help much: the error is spread out, so more (and smaller) culprits are taken."""
    wide = 2 ** level
    pairs = qdq_pairs(q_model)
    errs = P.trace(pre, q_model, feeds, pairs)
    noise = sorted(((v, t) for t, v in qdq_noise(q_model, pairs, feeds).items()), reverse=True) if pairs else []
    producer = {o: n for n in nodes for o in n.outputs}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    scored: list[tuple[float, list, str]] = []  # (score, nodes, why), one culprit each
    for v, t in noise:
        if v < max(NOISE_FLOOR / wide, 0.4 / wide * noise[0][0]) or len(scored) >= TENSORS_PER_ROUND * wide:
            break
        base = t[:-len("_QuantizeLinear_Input")] if t.endswith("_QuantizeLinear_Input") else t  # a graph output
        group = [g for g in _float_group(base, producer, consumers) if g not in skip]
        if group:
            scored.append((v, group, f"activation '{t}' loses {v:.0%} to int8"))
    used = {t: errs[d] for d, t in pairs.items() if d in errs}  # a consumer reads the dequantized value
    found = P.jumps(nodes, errs, among=involved(q_model, nodes) - skip, floor=NOISE_FLOOR / wide,
                    errs_in={**errs, **used})
    for jump, name, e_in, e_out in found[:NODES_PER_ROUND * wide]:
        if jump >= 0.5 / wide * found[0][0]:
            scored.append((jump, [name], f"error {e_in:.2f} -> {e_out:.2f}"))
    picks: dict[str, str] = {}  # worst culprit first
    for _, group, why in sorted(scored, key=lambda c: -c[0]):
        for g in group:
            picks.setdefault(g, why)
    return picks


@dataclass
class Repair:
    path: Path  # the int8 model to keep
    history: list  # cosine after each quantization
    samples: int
    excluded: dict = field(default_factory=dict)  # node kept float -> why
    suspects: dict = field(default_factory=dict)  # when it still collapses: what the last analysis blamed
    problem: str = ""  # the analysis failed: why (the model is then left to the proof)


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def repair(pre, quantize, keep: list[str], data, floor: float, aim: float) -> Repair:
    """Quantize, check, and while the cosine is below ``floor`` keep float the layers responsible
    (then on up to ``aim``), at most ROUNDS times. ``quantize(exclude) -> path`` (a new file each time)."""
    import onnx

    sess = P.session(pre)
    feeds = P.sample_feeds(sess, data, CHECK_SAMPLES)
    ref = P.outputs(sess, feeds)
    nodes = P.top_nodes(pre)

    def check(path):
        return P.final_cosine(ref, P.outputs(P.session(str(path)), feeds))[0]

    out = Repair(quantize(list(keep)), [], len(feeds))
    try:
        out.history.append(check(out.path))
    except Exception as e:
        raise RuntimeError(f"the int8 model does not load in onnxruntime ({_first_line(e)})") from e
    level, tried = 0, set()
    for r in range(ROUNDS + 1):
        if out.history[-1] >= (aim if out.excluded else floor):
            break
        skip = set(keep) | set(out.excluded) | tried
        try:
            picks = _culprits(pre, onnx.load(str(out.path)), nodes, feeds[:TRACE_SAMPLES], skip, level)
        except Exception as e:  # the analysis is a help, not a requirement: the proof still judges
            out.problem = f"the search for the layers responsible failed ({_first_line(e)})"
            break
        if r == ROUNDS or not picks:
            out.suspects = picks
            break
        path = quantize(list(keep) + list(out.excluded) + list(picks))
        try:
            cos = check(path)
        except Exception as e:  # ORT refuses some QDQ patterns: leave these layers int8, try others
            tried.update(picks)
            out.problem = f"onnxruntime refused the model with {', '.join(list(picks)[:4])}... float ({_first_line(e)})"
            continue
        gain = cos - out.history[-1]
        level = level + 1 if gain < 0.25 * (aim - out.history[-1]) else level
        if cos >= aim and len(picks) > TRIM_ABOVE:  # overshot with many layers: do the worst half suffice?
            picks, path, cos = _trim(picks, path, cos, lambda ex: quantize(list(keep) + list(out.excluded) + ex),
                                     check, aim)
        out.excluded.update(picks)
        out.path = path
        out.history.append(cos)
    return out


def _trim(picks: dict, path, cos: float, quantize, check, aim: float):
    """Keep only the worst half of ``picks`` float while that still reaches ``aim`` (twice at most)."""
    for _ in range(2):
        if len(picks) <= TRIM_ABOVE:
            break
        half = dict(list(picks.items())[:len(picks) // 2])
        try:
            p = quantize(list(half))
            c = check(p)
        except Exception:
            break
        if c < aim:
            break
        picks, path, cos = half, p, c
    return picks, path, cos


def excluded_note(excluded: dict, limit: int = 12) -> str:
    names = [f"{n} ({w})" for n, w in excluded.items()]
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return f"kept float ({len(names)}): " + ", ".join(names[:limit]) + more
