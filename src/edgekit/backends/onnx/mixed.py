"""Accuracy-aware mixed precision for ONNX Runtime's static int8: from full int8, keep the most
sensitive layers float until the recipe's budget is met on samples the calibration did not use.

The search set: calibration samples beyond those the recipe calibrates on, or else the last quarter
of them (the calibration then uses the rest), so that neither the held-out evaluation samples (the
proof and parity judge on those) nor the calibration samples pick the layers. Candidates come from the
diagnosis (``diagnose.layer_errors``: the error each layer adds), re-ranked by the cosine each buys
back alone; prefixes of that order are tried, doubling, then halved down to the smallest that meets
the budget. A task-drop budget is held by top-1 agreement with the float model (accuracy cannot drop
by more than the share of samples whose top-1 changes)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import precision as P
from .diagnose import TRACE_SAMPLES, layer_errors, output_group

SEARCH_MAX = 64
CANDIDATES, MEASURED = 32, 8


def _split(n: int, cap: int) -> tuple[range, range, str]:
    if n - min(n, cap) >= 16:
        return range(min(n, cap)), range(min(n, cap), min(n, cap + SEARCH_MAX)), "calibration samples past the cap"
    k = max(1, (3 * n) // 4)
    return range(min(k, cap)), range(k, min(n, k + SEARCH_MAX)), "the last quarter of the calibration samples"


def _agreement(ref: list[dict], got: list[dict]) -> float:
    name = next(iter(ref[0]))
    same = [np.argmax(r[name].reshape(r[name].shape[0], -1), axis=-1) == np.argmax(g[name].reshape(
        g[name].shape[0], -1), axis=-1) for r, g in zip(ref, got)]
    return float(np.mean(np.concatenate(same)))


def _p50_ms(path, feed: dict, runs: int = 30) -> float:
    sess = P.session(str(path))
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def accuracy_aware(model, quantize, keep: list[str], ctx) -> Path:
    """The int8 model to keep (a path ``quantize`` wrote); notes go to ``ctx.notes``."""
    recipe, data = ctx.recipe, ctx.data
    budget = recipe.budget
    calib, search, how = _split(data.n_calib, recipe.calibration.samples)
    sess = P.session(model)
    inputs = sess.get_inputs()
    feeds = [P.feed_at(inputs, data, i) for i in search]
    ref = P.outputs(sess, feeds)
    use_agree = budget.max_task_drop is not None and ref[0][next(iter(ref[0]))].ndim >= 2 \
        and ref[0][next(iter(ref[0]))].shape[-1] > 1

    def score(path) -> tuple[float, float | None]:
        got = P.outputs(P.session(str(path)), feeds)
        return P.final_cosine(ref, got)[0], (_agreement(ref, got) if use_agree else None)

    def meets(s) -> bool:
        cos, agree = s
        ok = budget.min_cosine is None or cos >= budget.min_cosine
        if budget.max_task_drop is not None:
            ok = ok and (agree >= 1.0 - budget.max_task_drop / 100.0 if agree is not None
                         else cos >= (budget.min_cosine or 0.98))
        return ok

    def words(s) -> str:
        return f"cosine {s[0]:.4f}" + (f", top-1 agreement {s[1]:.3f}" if s[1] is not None else "")

    want = " and ".join(w for w in (f"cosine >= {budget.min_cosine:g}" if budget.min_cosine is not None else "",
                                    f"task drop <= {budget.max_task_drop:g} points" + (" (as top-1 agreement)"
                                    if use_agree else " (as cosine: outputs have no classes)")
                                    if budget.max_task_drop is not None else "") if w)
    ctx.notes.append(f"accuracy-aware int8: budget {want} on {len(feeds)} search samples ({how}; calibrated on "
                     f"{len(calib)})")
    full = quantize(list(keep), calib)
    s_full = score(full)
    if meets(s_full):
        ctx.notes.append(f"full int8 meets it: {words(s_full)}; no layer kept float")
        return full
    import onnx

    layers = layer_errors(model, onnx.load(str(full)), feeds[:TRACE_SAMPLES])
    cands = [la for la in sorted(layers, key=lambda la: -la.added) if la.quantized and la.added > 0][:CANDIDATES]
    groups = {la.name: output_group(model, la.name) for la in cands}
    alone = {}
    for la in cands[:MEASURED]:
        try:
            alone[la.name] = score(quantize(list(keep) + groups[la.name], calib))[0]
        except Exception:  # ONNX Runtime refused the model with this layer float: try it last
            alone[la.name] = -1.0
    order = sorted(cands[:MEASURED], key=lambda la: -alone[la.name]) + cands[MEASURED:]
    tried: dict[int, tuple] = {}

    def attempt(k: int):
        if k not in tried:
            ex = list(dict.fromkeys(x for la in order[:k] for x in groups[la.name]))
            try:
                path = quantize(list(keep) + ex, calib)
                tried[k] = (score(path), path)
            except Exception:
                tried[k] = ((-1.0, None), None)
        return tried[k]

    k, met = 1, None
    while k <= len(order):
        s, _ = attempt(k)
        if meets(s):
            met = k
            break
        k = k * 2 if k * 2 <= len(order) or k == len(order) else len(order)
    if met is not None:
        lo, hi = met // 2, met  # the smallest prefix in (lo, hi] that meets it
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if meets(attempt(mid)[0]):
                hi = mid
            else:
                lo = mid
        met = hi
    pick = met if met is not None else max(tried, key=lambda i: tried[i][0][0], default=None)
    if pick is None or tried[pick][1] is None or tried[pick][0][0] <= s_full[0]:
        ctx.notes.append(f"budget NOT met: full int8 {words(s_full)}; keeping layers float did not help")
        return full
    s_pick, path = tried[pick]
    kept = [la.name for la in order[:pick]]
    layers = "1 layer and its output" if len(kept) == 1 else f"{len(kept)} layers and their outputs"
    ctx.notes.append(("budget met" if met is not None else "budget NOT met; the best found") +
                     f": {words(s_pick)} (full int8: {words(s_full)}) with {layers} "
                     f"kept float: {', '.join(kept[:12])}{' ...' if len(kept) > 12 else ''}; {len(tried) + len(alone)} "
                     "quantizations tried")
    size_full, size_pick = Path(full).stat().st_size, Path(path).stat().st_size
    t_full, t_pick = _p50_ms(full, feeds[0]), _p50_ms(path, feeds[0])
    ctx.notes.append(f"cost of the float layers: size {size_pick / 1e6:.2f} MB vs {size_full / 1e6:.2f} MB full "
                     f"int8 ({(size_pick / size_full - 1) * 100:+.1f}%); latency at conversion (ONNX Runtime, one "
                     f"sample, a rough figure; the benchmark judges) {t_pick:.3g} ms vs {t_full:.3g} ms "
                     f"({(t_pick / t_full - 1) * 100:+.0f}%)")
    return path
