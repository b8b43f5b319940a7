"""Accuracy-aware mixed precision for ai-edge-quantizer's int8 on a .tflite: from the recipe's int8,
take layers out of static int8 (each with its output, ``TfliteGraph.group``) until the recipe's budget is
met on calibration samples the calibration did not use (as on ONNX: ``onnx/mixed.py``).

Two things differ from ONNX, both measured on MiniLM with LiteRT (XNNPACK, one thread, a loaded
2-core host: minimum times). An op that holds no weight matrix costs nothing in size kept float and
little or no time (int8 on the FULLY_CONNECTED ops only: 4.9 ms; on every op: 10.8 ms), so those are
taken out first, by the error each adds (the diagnosis), and the ops with weights after them, by the
output cosine each buys back alone. And an op with weights taken out goes to dynamic-range int8 (int8
weights, its input quantized at run time, float output) rather than float: near float accuracy at
int8 size and speed (MiniLM at cosine 0.991: 23 MB and 4.8-5.1 ms, against 31 MB and 7.2 ms with those
layers float). Prefixes of that order are tried, doubling, then halved down to the smallest that meets
the budget. A task-drop budget is held by top-1 agreement with the float model."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import trace
from .aeq import DYNAMIC_OPS
from .diagnose import TRACE_SAMPLES, layer_errors

SEARCH_MAX = 64
MEASURED = 8  # ops with weights re-measured alone float
WEIGHTED = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D",
                      "EMBEDDING_LOOKUP"})


def split(n: int, cap: int) -> tuple[range, range, str]:
    """(calibration samples, search samples, how they were chosen)."""
    if n - min(n, cap) >= 16:
        return range(min(n, cap)), range(min(n, cap), min(n, cap + SEARCH_MAX)), "calibration samples past the cap"
    k = max(1, (3 * n) // 4)
    return range(min(k, cap)), range(k, min(n, k + SEARCH_MAX)), "the last quarter of the calibration samples"


class Judge:
    """Scores an int8 model on the search samples against the float model, by the recipe's budget."""

    def __init__(self, qz, budget, search: range):
        self.qz, self.budget = qz, budget
        self.feeds = [qz.feed(i) for i in search]
        self.ref = trace.outputs(qz.path, qz.signature, self.feeds)
        self.use_agree = budget.max_task_drop is not None and trace.top1_agreement(self.ref, self.ref) is not None

    def score(self, path) -> tuple[float, float | None]:
        try:
            got = trace.outputs(path, self.qz.signature, self.feeds)
        except (RuntimeError, ValueError):  # LiteRT refused this mix of int8 and float: never picked
            return -1.0, None
        return trace.final_cosine(self.ref, got), (trace.top1_agreement(self.ref, got) if self.use_agree else None)

    def meets(self, s) -> bool:
        cos, agree = s
        b = self.budget
        ok = b.min_cosine is None or cos >= b.min_cosine
        if b.max_task_drop is not None:
            ok = ok and (agree >= 1.0 - b.max_task_drop / 100.0 if agree is not None else cos >= (b.min_cosine or 0.98))
        return ok

    def want(self) -> str:
        b = self.budget
        parts = [f"cosine >= {b.min_cosine:g}"] if b.min_cosine is not None else []
        if b.max_task_drop is not None:
            parts.append(f"task drop <= {b.max_task_drop:g} points" + (" (as top-1 agreement)" if self.use_agree
                                                                       else " (as cosine: outputs have no classes)"))
        return " and ".join(parts)


def words(s) -> str:
    return f"cosine {s[0]:.4f}" + (f", top-1 agreement {s[1]:.3f}" if s[1] is not None else "")


def accuracy_aware(qz, keep: list[str], ctx) -> Path:
    """The int8 model to keep (a path ``qz`` wrote); notes go to ``ctx.notes``."""
    calib, search, how = split(ctx.data.n_calib, ctx.recipe.calibration.samples)
    judge = Judge(qz, ctx.recipe.budget, search)
    ctx.notes.append(f"accuracy-aware int8: budget {judge.want()} on {len(judge.feeds)} search samples ({how}; "
                     f"calibrated on {len(calib)})")
    full = qz.runnable(keep, calib)
    keep = keep + qz.refused
    s_full = judge.score(full)
    if judge.meets(s_full):
        ctx.notes.append(f"the recipe's int8 meets it: {words(s_full)}; no layer kept float")
        return full
    layers = [la for la in layers_of(qz, full, judge) if la.quantized]
    light = sorted((la for la in layers if la.op not in WEIGHTED), key=lambda la: (-la.added, la.order))
    heavy = sorted((la for la in layers if la.op in WEIGHTED), key=lambda la: (-la.added, la.order))
    # a light layer's readers with weights stay int8 (they quantize what they read): each is a candidate itself
    groups = {la.name: qz.graph.group(la.name, WEIGHTED if la.op not in WEIGHTED else frozenset()) for la in layers}
    base = keep + [x for la in light for x in groups[la.name]]  # every light layer float: the heavy ones alone

    def precisions(layers) -> tuple[list[str], list[str]]:
        """(ops float, ops at dynamic int8) for these layers kept from static int8 with their outputs: an
        op with weights goes to dynamic-range int8 (float output, near float accuracy, int8 speed)."""
        flt, dyn = [], []
        for la in layers:
            g = groups[la.name]
            if la.op in DYNAMIC_OPS:
                dyn.append(g[0])
                g = g[1:]
            flt += g
        return list(dict.fromkeys(flt)), dyn

    def quantize(layers):
        flt, dyn = precisions(layers)
        return qz.quantize(keep + flt, calib, dyn)

    alone = {la.name: judge.score(quantize(light + [la]))[0] for la in heavy[:MEASURED]}
    heavy = sorted(heavy[:MEASURED], key=lambda la: -alone[la.name]) + heavy[MEASURED:]
    order = light + heavy
    tried: dict[int, tuple] = {}

    def attempt(k: int):
        if k not in tried:
            path = quantize(order[:k])
            tried[k] = (judge.score(path), path)
        return tried[k]

    met = _smallest(len(order), lambda k: judge.meets(attempt(k)[0]))
    pick = met if met is not None else max(tried, key=lambda i: tried[i][0][0], default=None)
    if pick is None or tried[pick][0][0] <= s_full[0]:
        ctx.notes.append(f"budget NOT met: the recipe's int8 {words(s_full)}; keeping layers float did not help")
        return full
    s_pick, path = tried[pick]
    kept = order[:pick]
    dyn = [la.name for la in kept if la.op in DYNAMIC_OPS]
    ctx.notes.append(("budget met" if met is not None else "budget NOT met; the best found") +
                     f": {words(s_pick)} (the recipe's int8: {words(s_full)}) with {_layers(kept)} kept from "
                     f"static int8 (float, {len(dyn)} of them with weights at dynamic-range int8): "
                     f"{', '.join(la.name for la in kept[-12:])}{' and earlier ones' if len(kept) > 12 else ''}; "
                     f"{len(tried) + len(alone) + 1} quantizations tried")
    _cost_note(full, path, judge.feeds[0], qz.signature, ctx)
    return path


def layers_of(qz, full: Path, judge: Judge):
    return layer_errors(qz.graph, qz.path, full, qz.signature, judge.feeds[:TRACE_SAMPLES])


def _smallest(n: int, meets) -> int | None:
    """The smallest k in 1..n for which ``meets(k)`` holds, trying 1, 2, 4, ... then bisecting
    (assumes it keeps holding once it does, as keeping more float should)."""
    k, met = 1, None
    while k <= n:
        if meets(k):
            met = k
            break
        k = n if k < n < 2 * k else 2 * k
    if met is None:
        return None
    lo, hi = met // 2, met
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _layers(kept) -> str:
    from collections import Counter

    ops = Counter(la.op for la in kept)
    what = ", ".join(f"{n} {op}" for op, n in ops.most_common())
    return ("1 layer and its output" if len(kept) == 1 else f"{len(kept)} layers and their outputs") + f" ({what})"


def _cost_note(full: Path, pick: Path, feed: dict, signature: str, ctx) -> None:
    size_full, size_pick = full.stat().st_size, pick.stat().st_size
    t_full, t_pick = p50_ms(full, feed, signature), p50_ms(pick, feed, signature)
    ctx.notes.append(f"cost of the float layers: size {size_pick / 1e6:.2f} MB vs {size_full / 1e6:.2f} MB for the "
                     f"recipe's int8 ({(size_pick / size_full - 1) * 100:+.1f}%); latency at conversion (LiteRT, one "
                     f"thread, one sample, a rough figure; the benchmark judges) {t_pick:.3g} ms vs {t_full:.3g} ms "
                     f"({(t_pick / t_full - 1) * 100:+.0f}%)")


def p50_ms(path: Path, feed: dict, signature: str, runs: int = 30) -> float:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(signature)
    for _ in range(5):
        runner(**feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(**feed)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))
