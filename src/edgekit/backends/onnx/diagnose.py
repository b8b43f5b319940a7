"""Layer by layer, where ONNX Runtime's int8 loses accuracy: the float model and its QDQ version run
on the same calibration samples with every intermediate tensor exposed (``precision.trace``). A
layer's input error is what its inputs carry as it reads them (after their quantize/dequantize pair),
its output error what its consumers read; the difference is the error the layer adds, including the
quantization of its own output (so a layer whose activation holds an outlier is blamed, not the next
one). The worst layers are then quantized again with each alone kept float, with its output."""
from __future__ import annotations

from dataclasses import replace

from ...core.diagnosis import Diagnosis, LayerError
from . import precision as P

TRACE_SAMPLES = 8
CHECK_SAMPLES = 32


def layer_errors(model, q_model, feeds: list[dict]) -> list[LayerError]:
    """Every non-layout node of ``model``'s top graph with a measured float output, in graph order."""
    from .int8 import involved, qdq_pairs

    pairs = qdq_pairs(q_model)
    errs = P.trace(model, q_model, feeds, pairs)
    read = {t: errs[d] for d, t in pairs.items() if d in errs}  # a float tensor as its consumers read it

    def err(name):
        return read.get(name, errs.get(name))

    nodes = P.top_nodes(model)
    quantized = involved(q_model, nodes)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    # a node whose output the quantizer fused away (Conv -> Relu becomes one Conv writing the Relu's
    # output) is one layer with its single consumer: named after the first, measured at the last
    fused_into: dict[str, list] = {}
    out = []
    for n in nodes:
        head = fused_into.pop(n.name, [])
        if n.op in P.LAYOUT:
            continue
        outs = [e for e in map(err, n.outputs) if e is not None]
        first = head[0] if head else n
        if not outs:
            nxt = [c for o in n.outputs for c in consumers.get(o, [])]
            if len(nxt) == 1 and len(n.outputs) == 1 and nxt[0].op not in P.LAYOUT:
                fused_into[nxt[0].name] = head + [n] if head else [n]
            continue
        ins = [e for e in map(err, first.inputs) if e is not None]
        op = "+".join([h.op for h in head] + [n.op])
        out.append(LayerError(first.name, op, len(out), max(ins, default=0.0), max(outs),
                              any(x.name in quantized for x in head + [n])))
    return out


# ops the quantizer gives their input's scale: an outlier passes through them unchanged
SAME_SCALE = {"Relu", "Clip", "MaxPool", "GlobalMaxPool", "Resize", "LeakyRelu"}


def output_group(model, name: str) -> list[str]:
    """The node ``name`` with its output kept float: itself, the nodes through which its values pass
    with the same quantization (data movement, ReLU, max pooling), and the nodes that then read them."""
    from .int8 import _float_group

    nodes = P.top_nodes(model)
    producer = {o: n for n in nodes for o in n.outputs}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    node = next(n for n in nodes if n.name == name)
    group = [name]
    for o in node.outputs:
        group += _float_group(o, producer, consumers, through=P.LAYOUT | SAME_SCALE)
    return list(dict.fromkeys(group))


def island_reasons(model, keep: list[str]) -> list[str]:
    """Why each node the quantizer must leave float was found (values read from the model itself)."""
    return [f"{name}: reads a constant beyond 1e4 in magnitude (an additive mask); int8 would erase "
            "everything else in its range" for name in keep]


def diagnose_int8(edge, artifact, work, ctx, sensitivity: int) -> Diagnosis:
    import onnx

    model, quantize, keep = edge.prepare(artifact, work / "q", ctx)
    sess = P.session(model)
    feeds = P.sample_feeds(sess, ctx.data, CHECK_SAMPLES)
    ref = P.outputs(sess, feeds)

    def cosine_of(path) -> float:
        return P.final_cosine(ref, P.outputs(P.session(str(path)), feeds))[0]

    q_path = quantize(list(keep))
    cos = cosine_of(q_path)
    layers = layer_errors(model, onnx.load(str(q_path)), feeds[:TRACE_SAMPLES])
    ranked = sorted((la for la in layers if la.quantized and la.added > 0), key=lambda la: -la.added)
    alone = {}
    for la in ranked[:max(0, sensitivity)]:
        try:
            alone[la.name] = cosine_of(quantize(list(keep) + output_group(model, la.name)))
        except Exception as e:  # ONNX Runtime refuses some QDQ patterns: say so, measure the others
            ctx.notes.append(f"{la.name} alone float: not measured ({type(e).__name__})")
    layers = [replace(la, cosine_alone_float=alone.get(la.name)) for la in layers]
    recipe = ctx.recipe
    cal = recipe.calibration.label() if recipe.calibration is not None else "dynamic (no calibration)"
    tol = ctx.target.tolerance
    return Diagnosis(model=ctx.source.name, target=ctx.target.name, edge=edge.name(), recipe=recipe.name,
                     samples=len(feeds), cosine=cos, tolerance=_layer_tolerance(tol.min_cosine), layers=tuple(layers),
                     notes=tuple(ctx.notes), calibration=cal, never_quantize=tuple(island_reasons(model, keep)))


def _layer_tolerance(min_cosine: float) -> float:
    """The relative L2 error that corresponds to the target's cosine floor: for small errors,
    1 - cos ~ err^2 / 2, so err = sqrt(2 (1 - min_cosine)) (0.2 for a floor of 0.98)."""
    return (2.0 * (1.0 - min_cosine)) ** 0.5
