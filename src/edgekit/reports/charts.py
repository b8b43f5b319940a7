"""The report's per-model figures, built from records: the trade-off scatters (latency against
size and against accuracy, each with its Pareto front per device), the latency distributions and
the parity per target. The drawing itself is in ``svg``.

Emulated devices (QEMU) are left out of the trade-off scatters: an emulated latency says nothing
about the device's speed. Their latency boxes are drawn dashed and labelled.
"""
from __future__ import annotations

import math

from .fmt import cosine_text, esc, metric_text, ms_text, size_text
from .record import Record
from .scatter import scatter, scatter_legend
from .svg import FAIL, PASS, RowChart, Scale, bars_legend, box_legend, domain, nice_step, tick_fmt


def pareto_front(points, maximize=None) -> list[int]:
    """Indices of the non-dominated points, every coordinate minimised (or maximised where
    ``maximize[k]`` is true). A point is dominated when another is at least as good in every
    coordinate and strictly better in one; exact duplicates of a front point are all on the front.
    Points with a missing or NaN coordinate are never on the front. The indices come back sorted
    by the first coordinate (then the second), the order to draw the front's line in."""
    pts = [tuple(p) for p in points]
    if not pts:
        return []
    k = len(pts[0])
    sign = [(-1.0 if maximize and maximize[i] else 1.0) for i in range(k)]
    keyed = []
    for i, p in enumerate(pts):
        if len(p) != k:
            raise ValueError(f"point {i} has {len(p)} coordinates, expected {k}")
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in p):
            continue
        keyed.append((tuple(s * float(v) for s, v in zip(sign, p)), i))
    keyed.sort()
    if k == 2:  # one sweep: sorted by (x, y), a point is on the front iff no earlier one is as low
        front, best_y, best_x = [], math.inf, None
        for (x, y), i in keyed:
            if y < best_y:
                best_y, best_x = y, x
                front.append(i)
            elif y == best_y and x == best_x:  # an exact duplicate of the front point before it
                front.append(i)
        return front
    front = []
    for a, i in keyed:  # any dimension: quadratic, fine for the handful of targets in a report
        if not any(all(bv <= av for av, bv in zip(a, b)) and b != a for b, _ in keyed):
            front.append(i)
    return front


def recipe_series(r: Record) -> str:
    """The series a record belongs to when training recipes are compared: its recipe chain."""
    chain = "+".join(p["recipe"] for p in r.extra.get("prepared") or [])
    return f"recipe {chain}" if chain else "no training recipe"


def tradeoffs(records: list[Record], model: str, colour_of) -> str:
    """Latency against size and against accuracy (the task metric, else the worst-output cosine),
    each with the Pareto front per device; emulated timings left out and said so."""
    rs = [r for r in records if r.model_name == model]
    metric = next((r.task_metric for r in rs if r.task_value is not None and r.task_metric), None)
    use_task = any(r.task_value is not None for r in rs if not r.is_source)
    ylab = (metric or "task metric") if use_task else "worst cosine"
    skipped_emu, not_plotted = [], []
    size_pts, acc_pts = [], []
    multi_dev = len({x.device_label for x in rs if x.timed and not x.emulated and not x.is_source}) > 1
    # one device and training recipes in the run: each recipe is a series (its own colour and Pareto front)
    by_recipe = not multi_dev and any(x.extra.get("prepared") for x in rs if not x.is_source)
    for n, r in enumerate(rs, 1):
        if not r.timed:
            if not r.is_source:
                on = f" on {r.device_label}" if r.device else ""
                not_plotted.append(f"{r.name}{on} ({r.status_text})")
            continue
        if r.emulated:
            skipped_emu.append(f"{r.name} on {r.device_label}")
            continue
        lat = r.p50_ms
        kind = "source" if r.is_source else "ok" if r.ok else "failed"
        dev = recipe_series(r) if by_recipe else r.device_label
        text = r.name if not multi_dev or r.is_source else f"{r.name} @{dev}"
        base = {"x": lat, "colour": colour_of(dev), "kind": kind, "dev": dev, "text": text, "num": n}
        tip = f"{r.name} on {dev} ({r.status_text})\np50 {ms_text(lat)} ms, p90 {ms_text(r.p90_ms)} ms"
        if r.size:
            size_pts.append(dict(base, y=r.size, tip=tip + f"\nsize {size_text(r.size)}"))
        if use_task:
            v = r.task_value
        else:
            v = 1.0 if r.is_source else r.worst_cosine
        if v is not None:
            shown = metric_text(metric, v) if use_task else cosine_text(v)
            acc_pts.append(dict(base, y=v, tip=tip + f"\n{ylab} {shown}"))

    def fronts(pts, maximize_y):
        out = []
        for dev in dict.fromkeys(p["dev"] for p in pts):
            cand = [i for i, p in enumerate(pts) if p["dev"] == dev and p["kind"] == "ok"]
            front = [cand[j] for j in pareto_front([(pts[i]["x"], pts[i]["y"]) for i in cand],
                                                   maximize=(False, maximize_y))]
            for i in front:
                pts[i]["kind"] = "front"
            out.append((colour_of(dev), front))
        return out

    figs, numbered = [], set()
    size_cap = "Latency vs size <span class=better>better ↙ faster, smaller</span>"
    if size_pts:
        fs = fronts(size_pts, False)
        svg, nums = scatter(size_pts, fs, "ms", "size", "p50 latency, ms", "artifact size",
                            f"{model}: latency against size")
        figs.append((size_cap, svg))
        numbered |= nums
    else:
        figs.append((size_cap, '<p class="empty">No timed artifact with a size to plot.</p>'))
    acc_cap = (f"Latency vs {esc(ylab)} <span class=better>better ↖ faster, "
               f"{'more accurate' if use_task else 'closer to the source'}</span>")
    if acc_pts:
        fa = fronts(acc_pts, True)
        svg, nums = scatter(acc_pts, fa, "ms", "pct" if use_task else "num", "p50 latency, ms", ylab,
                            f"{model}: latency against {ylab}", ylog=False, y_hi_cap=1.0)
        figs.append((acc_cap, svg))
        numbered |= nums
    else:
        figs.append((acc_cap, '<p class="empty">No timed artifact with an accuracy to plot.</p>'))
    devs = list(dict.fromkeys(p["dev"] for p in size_pts + acc_pts if p["kind"] != "source"))
    out = ['<div class="figrow">'] + [f'<figure><figcaption>{t}</figcaption>{s}</figure>' for t, s in figs]
    out.append("</div>")
    out.append(scatter_legend(devs, colour_of, "of" if by_recipe else "on"))
    notes = []
    if numbered:
        names = {p["num"]: p["text"] for p in size_pts + acc_pts}
        notes.append('<p class="note numkey"><b>Numbered points</b> (no room for the name): ' + ", ".join(
            f'<span class="num">{n}</span>&nbsp;{esc(names[n])}' for n in sorted(numbered)) + ".</p>")
    if skipped_emu:
        notes.append(f'<p class="note emu-note">Left out: {len(skipped_emu)} emulated measurement'
                     f'{"s" if len(skipped_emu) != 1 else ""} ({esc(", ".join(skipped_emu))}) — '
                     f'<b>emulated: not device speed</b>.</p>')
    if not_plotted:
        notes.append(f'<p class="note">Not plotted (no timing): {esc("; ".join(not_plotted))}.</p>')
    notes.append('<p class="note">Pareto front: the artifacts that passed parity and that no other passing '
                 'artifact on the same device beats on both axes (lower latency and smaller size; lower latency '
                 'and higher accuracy). Hover a point for its numbers.</p>')
    return "".join(out + notes)


LATENCY_KEYS = ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def latency_boxes(records: list[Record], model: str, colour_of) -> str:
    """One latency box per timed record (min…p99 whiskers, p50…p90 box); emulated ones dashed."""
    rows = [r for r in records if r.model_name == model and r.timed]
    if not rows:
        return '<p class="empty">No latency measured for this model.</p>'
    chart = RowChart(len(rows), row_h=30, right=370)
    vals = [r.bench_value(q) for r in rows for q in LATENCY_KEYS]
    lo, hi, log = domain(vals, log=True, pad=0.04)
    sx = Scale(lo, hi, chart.x0, chart.x1, log)
    ticks = sx.ticks(8)
    chart.frame(sx, ticks, tick_fmt(ticks, "ms", log), f'latency per inference, ms{" (log)" if log else ""}',
                "p50 · p90 · p99, ms")
    for k, r in enumerate(rows):
        emu = r.emulated
        c = "#64748b" if r.is_source else colour_of(r.device_label)
        g = {q: (r.bench_value(q) if r.bench_value(q) is not None else r.p50_ms) for q in LATENCY_KEYS}
        cy = chart.row(k, r.name, "b" if not r.is_source else "src", r.device_label, "emu-t" if emu else "dim")
        tip = (f"{r.name} on {r.device_label}{' (EMULATED: not device speed)' if emu else ''}\n"
               f"min {ms_text(g['min_ms'])}  p50 {ms_text(g['p50_ms'])}  p90 {ms_text(g['p90_ms'])}  "
               f"p99 {ms_text(g['p99_ms'])}  max {ms_text(g['max_ms'])} ms, n={r.bench.n}")
        chart.box(cy, {q: sx(v) for q, v in g.items()}, c, emu, tip)
        tags = []
        if emu:
            tags.append('<tspan class="emu-t">emulated: not device speed</tspan>')
        elif r.noisy:
            tags.append('<tspan class="noisy-t">noisy</tspan>')
        chart.value(cy, f"{ms_text(g['p50_ms'])} · {ms_text(g['p90_ms'])} · {ms_text(g['p99_ms'])}",
                    tags=" ".join(tags))
    return chart.svg(f"{model}: latency distributions") + box_legend()


def parity_bars(records: list[Record], model: str) -> str:
    """One bar per converted target: its task metric (else its worst-output cosine), pass or fail."""
    rs = [r for r in records if r.model_name == model]
    src = next((r for r in rs if r.is_source), None)
    rows = [r for r in rs if not r.is_source]
    if not rows:
        return '<p class="empty">No converted targets.</p>'
    use_task = any(r.task_value is not None for r in rows)
    metric = next((r.task_metric for r in rows if r.task_value is not None), None) if use_task else None

    def value(r):
        return r.task_value if use_task else r.worst_cosine

    vals = [value(r) for r in rows if value(r) is not None]
    ref = src.task_value if (use_task and src) else None
    if vals:
        lo_v = min(vals + ([ref] if ref is not None else []))
        span = max(1.0 - lo_v, 1e-6)
        lo = max(0.0, lo_v - 0.35 * span)
        lo = math.floor(lo / nice_step(1.0 - lo, 5)) * nice_step(1.0 - lo, 5)
    else:
        lo = 0.0
    chart = RowChart(len(rows), row_h=26, right=330)
    sx = Scale(lo, 1.0, chart.x0, chart.x1)
    ticks = sx.ticks(6)
    fmt = tick_fmt(ticks, "pct" if use_task else "num")
    axl = (f"{metric or 'task metric'} on the held-out data" if use_task else "worst cosine (mean per-sample cosine)")
    chart.frame(sx, ticks, fmt, f'{esc(axl)}{" — axis starts at " + esc(fmt(lo)) if lo > 0 else ""}',
                "value (Δ pts vs source)" if use_task else "worst cosine · max err")
    for k, r in enumerate(rows):
        v = value(r)
        cy = chart.row(k, r.target or "?", "b", r.device_label if r.device else None)
        if v is None:
            chart.note(cy, f"no parity result: {esc(r.status_text)}")
            continue
        failures = "; ".join(r.parity.failures or ()) if r.parity else ""
        tip = f"{r.target or '?'} on {r.device_label}: {'passed' if r.passed else 'FAILED: ' + failures}"
        chart.bar(cy, sx(max(v, lo)), PASS if r.passed else FAIL, tip)
        if use_task:
            d = r.task_delta
            txt = metric_text(metric, v) + (f" ({d:+.2f})" if d is not None else "")
        else:
            txt = cosine_text(v) + (f" · {r.max_err_text}" if r.worst_max_abs is not None else "")
        chart.value(cy, txt, f'<tspan class="{"pass-t" if r.passed else "fail-t"}">  '
                             f'{"pass" if r.passed else "FAIL"}</tspan>')
    if ref is not None:
        chart.refline(sx(ref), f"source {metric_text(metric, ref)}")
    return chart.svg(f"{model}: parity per target") + bars_legend(ref is not None)
