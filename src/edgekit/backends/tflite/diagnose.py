"""Layer by layer, where ai-edge-quantizer's int8 loses accuracy on a .tflite: the float model and its
int8 version run on the same calibration samples with every tensor kept (``trace``). A layer is an
op of the float model, named by its output tensors; its input error is what its inputs carry as it
reads them, its output error what its consumers read, so the difference is the error it adds
(including the quantization of its own output). The worst layers are then quantized again with
each alone kept float, with its output (``TfliteGraph.group``), as on ONNX."""
from __future__ import annotations

from dataclasses import replace

from ...core.diagnosis import Diagnosis, LayerError
from . import trace
from .aeq import LAYOUT, Quantizer, TfliteGraph, label

TRACE_SAMPLES = 8
CHECK_SAMPLES = 32
MASK_SAMPLES = 4


def layer_errors(graph: TfliteGraph, float_path, q_path, signature: str, feeds: list[dict]) -> list[LayerError]:
    """Every non-layout op with a measured float output, in graph order."""
    errs = trace.tensor_errors(float_path, q_path, signature, feeds)
    quantized = _quantized_outputs(q_path)
    out = []
    for op in graph.ops:
        if op.op in LAYOUT:
            continue
        outs = [errs[o] for o in op.outputs if o in errs]
        if not outs:
            continue
        ins = [errs[i] for i in op.inputs if i in errs and i not in graph.constants]
        out.append(LayerError(graph.labels[op.name], op.op, len(out), max(ins, default=0.0), max(outs),
                              any(o in quantized for o in op.outputs)))
    return out


def _quantized_outputs(q_path) -> set[str]:
    """Tensors the int8 model computes in an integer type (its ops' outputs)."""
    import numpy as np

    from .aeq import interpreter

    interp = interpreter(q_path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    return {details[o]["name"] for op in interp._get_ops_details() if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
            for o in op["outputs"] if o in details and np.dtype(details[o]["dtype"]).kind == "i"}


def never_quantize(qz: Quantizer) -> tuple[list[str], list[str]]:
    """(ops to keep float whatever the recipe, why): the ops writing or reading a tensor that holds a
    mask stand-in on the calibration samples (int8 would erase everything else in its range; the
    quantizer's calibration leaves values beyond 3e38 out, so the mask would vanish)."""
    feeds = [qz.feed(i) for i in range(min(MASK_SAMPLES, qz.data.n_calib))]
    found = trace.masks(qz.path, qz.signature, feeds)
    keep: list[str] = []
    for tensor in found:
        keep += qz.graph.tensor_group(tensor)
    roots = [t for t in found if not any(i in found for i in _inputs_of(qz.graph, t))]
    why = [f"{label(t)}: holds {'-inf/inf' if found[t] == float('inf') else f'{found[t]:.3g}'} (a mask stand-in); int8 "
           "would erase every other value in its range" for t in roots]
    return list(dict.fromkeys(keep)), why


def _inputs_of(graph: TfliteGraph, tensor: str) -> tuple[str, ...]:
    op = graph.producer.get(tensor)
    return op.inputs if op is not None else ()


def diagnose_int8(edge, qz: Quantizer, ctx, sensitivity: int) -> Diagnosis:
    keep, why = never_quantize(qz)
    q_path = qz.runnable(keep)
    keep = keep + qz.refused
    feeds = [qz.feed(i) for i in range(min(CHECK_SAMPLES, ctx.data.n_calib))]
    ref = trace.outputs(qz.path, qz.signature, feeds)

    def cosine_of(path) -> float:
        return trace.final_cosine(ref, trace.outputs(path, qz.signature, feeds))

    cos = cosine_of(q_path)
    layers = layer_errors(qz.graph, qz.path, q_path, qz.signature, feeds[:TRACE_SAMPLES])
    ranked = sorted((la for la in layers if la.quantized and la.added > 0), key=lambda la: -la.added)
    alone = {}
    for la in ranked[:max(0, sensitivity)]:
        alone[la.name] = cosine_of(qz.quantize(keep + qz.graph.group(la.name)))
    layers = [replace(la, cosine_alone_float=alone.get(la.name)) for la in layers]
    notes = list(ctx.notes)
    if qz.refused:
        notes.append(f"kept float: {len(qz.refused)} ops LiteRT cannot run in int8 on these values (e.g. an int8 "
                     f"divisor at its zero point): {', '.join(map(qz.graph.labels.get, qz.refused[:4]))}")
    from .quantize import layer_tolerance

    return Diagnosis(model=ctx.source.name, target=ctx.target.name, edge=edge.name(), recipe=ctx.recipe.name,
                     samples=len(feeds), cosine=cos, tolerance=layer_tolerance(ctx.target.tolerance.min_cosine),
                     layers=tuple(layers), notes=tuple(notes), calibration=ctx.recipe.calibration.label(),
                     never_quantize=tuple(why))
