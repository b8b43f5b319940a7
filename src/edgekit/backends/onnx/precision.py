"""Where precision is lost: a float model and its fp16/int8 version run side by side on calibration
samples with every intermediate float tensor of the top graph exposed as an output, so that what a
lower precision does to each node is measured, not guessed.

Two questions are answered here, both from data:
- which nodes see values fp16 cannot hold (``fp16_range``: outputs or inputs beyond its range, or
  exp-like ops fed values so large that fp16's spacing changes their result);
- where the error of a lower-precision model appears (``trace``: per-tensor error against the float
  model; ``jumps``: the nodes whose outputs are much worse than their inputs).

Nodes inside If/Loop/Scan bodies are not exposed: such a node is measured as one node.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP16_MAX = 65504.0
RANGE_LIMIT = FP16_MAX / 2  # headroom: held-out data may reach further than the calibration samples
EXP_LIKE = {"Exp", "Softmax", "LogSoftmax"}
EXP_LIMIT = 2048.0  # fp16's spacing is 2 there: a logit off by one changes exp() by a factor e
FLOAT_TYPES = (1, 10, 16)  # FLOAT, FLOAT16, BFLOAT16
WORST = 10.0  # the error of a tensor that is not finite where the float one is
MASK_LIKE = 1e4  # elements beyond this (additive masks, -inf stand-ins) are left out of a tensor's error
LAYOUT = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Concat", "Split", "Slice",
          "Expand", "Tile", "Cast", "Pad", "DepthToSpace", "SpaceToDepth"}
NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
            "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


@dataclass
class Node:
    name: str
    op: str
    inputs: list
    outputs: list


def name_nodes(model) -> int:
    """Give every unnamed node (in every graph) a unique name, so that it can be listed; returns how many."""
    seen, todo = set(), []

    def visit(graph):
        for n in graph.node:
            (seen.add(n.name) if n.name else todo.append(n))
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    visit(a.g)
                for g in a.graphs:
                    visit(g)

    visit(model.graph)
    for i, n in enumerate(todo):
        name, k = f"{n.op_type}_{i}", 0
        while name in seen:
            k += 1
            name = f"{n.op_type}_{i}_{k}"
        n.name = name
        seen.add(name)
    return len(todo)


def top_nodes(model) -> list[Node]:
    return [Node(n.name, n.op_type, [i for i in n.input if i], [o for o in n.output if o]) for n in model.graph.node]


def float_tensors(model) -> list[str]:
    """Names of the top graph's node outputs that hold floats (by ONNX type inference)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    out = []
    for n in model.graph.node:
        for o in n.output:
            if o and types.get(o) in FLOAT_TYPES:
                out.append(o)
    return out


def exposed(model, names: list[str]) -> bytes:
    """The model serialised with ``names`` added as graph outputs (their types left to the runtime)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return m.SerializeToString()


def session(model_or_bytes, plain: bool = False):
    """An ORT session; ``plain``: no graph optimisations (every exposed tensor computed as written)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    if plain:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model_or_bytes if isinstance(model_or_bytes, (bytes, str)) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def feed_at(inputs, data, i: int) -> dict:
    """Calibration sample ``i`` as the model takes it (``inputs``: the session's input args)."""
    try:
        from edgekit.runner.runtime_base import lookup_input, sample_feed
    except ImportError:  # pragma: no cover
        from runtime_base import lookup_input, sample_feed
    one = sample_feed(data.calib, i, tuple(data.stacked))
    return {inp.name: np.ascontiguousarray(np.asarray(lookup_input(one, inp.name))
                                           .astype(NP_TYPES.get(inp.type, np.float32))) for inp in inputs}


def sample_feeds(sess, data, n: int) -> list[dict]:
    """Up to ``n`` calibration samples as the model takes them (each input cast to its type)."""
    inputs = sess.get_inputs()
    return [feed_at(inputs, data, i) for i in range(min(n, data.n_calib))]


def _rel(diff: np.ndarray, ref: np.ndarray, axis: int) -> float:
    """Mean over slices of the slice's relative error (slices along ``axis`` of a 2-D view); a
    slice near zero is measured against a typical slice instead (an upper quartile: robust to a
    few outliers and to many zeros)."""
    nr = np.linalg.norm(ref, axis=axis)
    nd = np.linalg.norm(diff, axis=axis)
    floor = 0.05 * (np.percentile(nr, 75) or nr.mean())
    if floor == 0:
        return 0.0 if not nd.any() else WORST
    return float(np.mean(np.minimum(nd / np.maximum(nr, floor), 2.0)))


def tensor_error(ref: np.ndarray, got: np.ndarray) -> float:
    """How far ``got`` is from ``ref``: the relative error of each vector along the last axis and of
    each channel across them (the worse of the two means), so that a few outlier channels or rows
    cannot hide what happened to the others; WORST where ``got`` is not finite and ``ref`` is."""
    r = np.asarray(ref, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    if r.shape != g.shape:
        return WORST
    fin = np.isfinite(r)
    if not np.isfinite(g[fin]).all():
        return WORST
    masked = ~fin | (np.abs(r) > MASK_LIKE)
    if masked.any():  # masks are left out: their size would hide the error of the rest
        r, g = np.where(masked, 0.0, r), np.where(masked, 0.0, g)
    if r.size == 0:
        return 0.0
    r2 = r.reshape(1, -1) if r.ndim < 2 or r.shape[-1] < 2 else r.reshape(-1, r.shape[-1])
    d2 = r2 - g.reshape(r2.shape)
    return min(WORST, max(_rel(d2, r2, 1), _rel(d2, r2, 0)))


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    r = np.asarray(ref, dtype=np.float64).ravel()
    g = np.asarray(got, dtype=np.float64).ravel()
    if not np.isfinite(g).all():
        return 0.0
    nr, ng = np.linalg.norm(r), np.linalg.norm(g)
    if nr == 0 or ng == 0:
        return 1.0 if nr == ng else 0.0
    return float(r @ g / (nr * ng))


def outputs(sess, feeds: list[dict]) -> list[dict]:
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, f))) for f in feeds]


def final_cosine(ref: list[dict], got: list[dict]) -> tuple[float, str]:
    """(worst output's mean cosine over the samples, that output's name)."""
    per = {k: float(np.mean([cosine(r[k], g[k]) for r, g in zip(ref, got)])) for k in ref[0] if k in got[0]}
    worst = min(per, key=per.get)
    return per[worst], worst


def fp16_range(model, feeds: list[dict]) -> dict[str, str]:
    """Nodes of the top graph that must stay fp32 because of the values they see: node name -> why."""
    from onnx import numpy_helper

    names = float_tensors(model)
    sess = session(exposed(model, names), plain=True)
    want = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    for f in feeds:
        for k, v in list(zip(want, sess.run(want, f))) + list(f.items()):
            if getattr(v, "dtype", None) is not None and v.dtype.kind == "f" and v.size:
                fin = np.abs(v[np.isfinite(v)]) if not np.isfinite(v).all() else np.abs(v)
                top = float(fin.max()) if fin.size else float("inf")
                peak[k] = max(peak.get(k, 0.0), top if np.isfinite(v).all() else float("inf"))
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size:
            peak[init.name] = float(np.abs(a).max())
    why: dict[str, str] = {}
    for n in top_nodes(model):
        outs = [peak[o] for o in n.outputs if o in peak]
        ins = [peak[i] for i in n.inputs if i in peak]
        if outs and max(outs) > RANGE_LIMIT:
            why[n.name] = f"range: output |x| up to {max(outs):.3g}"
        elif ins and max(ins) > RANGE_LIMIT:
            why[n.name] = f"range: input |x| up to {max(ins):.3g}"
        elif n.op in EXP_LIKE and ins and max(ins) > EXP_LIMIT:
            why[n.name] = f"range: {n.op} of |x| up to {max(ins):.3g}"
    return why


def trace(ref_model, cand_model, feeds: list[dict], alias: dict | None = None) -> dict[str, float]:
    """Mean relative error of the candidate's float tensors against the float model's: every tensor
    the two share by name, and each ``alias`` (candidate tensor -> the float tensor it stands for,
    e.g. an activation after its quantize/dequantize pair). Keys are candidate tensor names."""
    names = float_tensors(ref_model)
    cand_names = {o for n in cand_model.graph.node for o in n.output}
    pairs = {n: n for n in names if n in cand_names}
    pairs.update({c: r for c, r in (alias or {}).items() if r in names})
    want_ref = sorted(set(pairs.values()))
    want_cand = sorted(pairs)
    rs = session(exposed(ref_model, want_ref), plain=True)
    cs = session(exposed(cand_model, want_cand), plain=True)
    total: dict[str, float] = {}
    for f in feeds:
        ref = dict(zip(want_ref, rs.run(want_ref, f)))
        got = dict(zip(want_cand, cs.run(want_cand, {i.name: f[i.name] for i in cs.get_inputs()})))
        for c, r in pairs.items():
            total[c] = total.get(c, 0.0) + tensor_error(ref[r], got[c])
    return {k: v / len(feeds) for k, v in total.items()}


def jumps(nodes: list[Node], errs: dict[str, float], among=None, floor: float = 0.0, errs_in=None) -> list[tuple]:
    """Nodes whose output error is well above their inputs': (jump, node name, error in, error out),
    largest jump first; ``among``: only these node names; ``floor``: the error any node may add;
    ``errs_in``: the errors of tensors as their consumers read them (default ``errs``).
    Data-movement ops are left out: they add no error (the measure depends on a tensor's layout)."""
    out = []
    for n in nodes:
        if n.op in LAYOUT or (among is not None and n.name not in among):
            continue
        e_out = max((errs[o] for o in n.outputs if o in errs), default=None)
        if e_out is None:
            continue
        e_in = max(((errs_in or errs)[i] for i in n.inputs if i in (errs_in or errs)), default=0.0)
        jump = e_out - e_in
        if jump > floor and e_out > 1.5 * e_in:
            out.append((jump, n.name, e_in, e_out))
    return sorted(out, reverse=True)
