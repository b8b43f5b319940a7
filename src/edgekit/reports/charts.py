"""The report's per-model figures, built from records: the trade-off scatters (latency against
size and against accuracy, each with its Pareto front per device), the latency distributions and
the parity per target. The drawing itself is ``svg_plots``'s.

Emulated devices (QEMU) are left out of the trade-off scatters: an emulated latency says nothing
about the device's speed. Their latency boxes are drawn dashed and labelled.
"""
from __future__ import annotations

import math

from .sections import (
    STATUS_TEXT,
    _bench,
    _cos,
    _dev_name,
    _emulated,
    _is_source,
    _metric_value,
    _ms,
    _num,
    _size,
    _task,
    _worst,
)
from .svg import (
    FAIL,
    PASS,
    _bars_legend,
    _box_legend,
    _domain,
    _e,
    _nice_step,
    _RowChart,
    _Scale,
    _scatter,
    _scatter_legend,
    _tick_fmt,
)


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


def _tradeoffs(records, model: str, colour_of) -> str:
    rs = [r for r in records if (r.get("model") or "?") == model]
    metric = next((_task(r)[0] for r in rs if _task(r)[1] is not None and _task(r)[0]), None)
    use_task = any(_task(r)[1] is not None for r in rs if not _is_source(r))
    ylab = (metric or "task metric") if use_task else "worst-output cosine (mean)"
    skipped_emu, not_plotted = [], []
    size_pts, acc_pts = [], []
    multi_dev = len({_dev_name(x) for x in rs if _bench(x) and not _emulated(x) and not _is_source(x)}) > 1
    for num, r in enumerate(rs, 1):
        b = _bench(r)
        st = r.get("status")
        name = "source" if _is_source(r) else (r.get("target") or "?")
        if not b:
            if not _is_source(r):
                on = f" on {_dev_name(r)}" if r.get("device") else ""
                not_plotted.append(f"{name}{on} ({STATUS_TEXT.get(st, st)})")
            continue
        if _emulated(r):
            skipped_emu.append(f"{name} on {_dev_name(r)}")
            continue
        lat = b["p50_ms"]
        kind = "source" if _is_source(r) else "ok" if st == "ok" else "failed"
        dev = _dev_name(r)
        text = name if not multi_dev or _is_source(r) else f"{name} @{dev}"
        base = {"x": lat, "colour": colour_of(dev), "kind": kind, "dev": dev, "text": text, "num": num}
        tip = f"{name} on {dev} ({STATUS_TEXT.get(st, st)})\np50 {_ms(lat)} ms, p90 {_ms(b.get('p90_ms'))} ms"
        size = _num(r.get("size_bytes"))
        if size:
            size_pts.append(dict(base, y=size, tip=tip + f"\nsize {_size(size)}"))
        if use_task:
            v = _task(r)[1]
        else:
            w = _worst(r)
            v = 1.0 if _is_source(r) else (_num(w.get("cosine_mean")) if w else None)
        if v is not None:
            acc_pts.append(dict(base, y=v, tip=tip + f"\n{ylab} {_metric_value(metric, v) if use_task else _cos(v)}"))

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
        svg, nums = _scatter(size_pts, fs, "ms", "size", "p50 latency, ms", "artifact size",
                             f"{model}: latency against size")
        figs.append((size_cap, svg))
        numbered |= nums
    else:
        figs.append((size_cap, '<p class="empty">No timed artifact with a size to plot.</p>'))
    acc_cap = (f"Latency vs {_e(ylab)} <span class=better>better ↖ faster, "
               f"{'more accurate' if use_task else 'closer to the source'}</span>")
    if acc_pts:
        fa = fronts(acc_pts, True)
        svg, nums = _scatter(acc_pts, fa, "ms", "pct" if use_task else "num", "p50 latency, ms", ylab,
                             f"{model}: latency against {ylab}", ylog=False, y_hi_cap=1.0)
        figs.append((acc_cap, svg))
        numbered |= nums
    else:
        figs.append((acc_cap, '<p class="empty">No timed artifact with an accuracy to plot.</p>'))
    devs = list(dict.fromkeys(p["dev"] for p in size_pts + acc_pts if p["kind"] != "source"))
    out = ['<div class="figrow">'] + [f'<figure><figcaption>{t}</figcaption>{s}</figure>' for t, s in figs]
    out.append("</div>")
    out.append(_scatter_legend(devs, colour_of))
    notes = []
    if numbered:
        names = {p["num"]: p["text"] for p in size_pts + acc_pts}
        notes.append('<p class="note numkey"><b>Numbered points</b> (no room for the name): ' + ", ".join(
            f'<span class="num">{n}</span>&nbsp;{_e(names[n])}' for n in sorted(numbered)) + ".</p>")
    if skipped_emu:
        notes.append(f'<p class="note emu-note">Left out: {len(skipped_emu)} emulated measurement'
                     f'{"s" if len(skipped_emu) != 1 else ""} ({_e(", ".join(skipped_emu))}) — '
                     f'<b>emulated: not device speed</b>.</p>')
    if not_plotted:
        notes.append(f'<p class="note">Not plotted (no timing): {_e("; ".join(not_plotted))}.</p>')
    notes.append('<p class="note">Pareto front: the artifacts that passed parity and that no other passing '
                 'artifact on the same device beats on both axes (lower latency and smaller size; lower latency '
                 'and higher accuracy). Hover a point for its numbers.</p>')
    return "".join(out + notes)


def _latency_boxes(records, model: str, colour_of) -> str:
    rows = [r for r in records if (r.get("model") or "?") == model and _bench(r)]
    if not rows:
        return '<p class="empty">No latency measured for this model.</p>'
    chart = _RowChart(len(rows), row_h=30, right=370)
    vals = []
    for r in rows:
        b = _bench(r)
        vals += [_num(b.get(k)) for k in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")]
    lo, hi, log = _domain(vals, log=True, pad=0.04)
    sx = _Scale(lo, hi, chart.x0, chart.x1, log)
    ticks = sx.ticks(8)
    chart.frame(sx, ticks, _tick_fmt(ticks, "ms", log), f'latency per inference, ms{" (log)" if log else ""}',
                "p50 · p90 · p99, ms")
    for k, r in enumerate(rows):
        b = _bench(r)
        emu = _emulated(r)
        c = "#64748b" if _is_source(r) else colour_of(_dev_name(r))
        g = {q: _num(b.get(q)) for q in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")}
        g = {q: (v if v is not None else b["p50_ms"]) for q, v in g.items()}
        name = "source" if _is_source(r) else (r.get("target") or "?")
        cy = chart.row(k, name, "b" if not _is_source(r) else "src", _dev_name(r), "emu-t" if emu else "dim")
        tip = (f"{name} on {_dev_name(r)}{' (EMULATED: not device speed)' if emu else ''}\n"
               f"min {_ms(g['min_ms'])}  p50 {_ms(g['p50_ms'])}  p90 {_ms(g['p90_ms'])}  p99 {_ms(g['p99_ms'])}  "
               f"max {_ms(g['max_ms'])} ms, n={b.get('n')}")
        chart.box(cy, {q: sx(v) for q, v in g.items()}, c, emu, tip)
        tags = []
        if emu:
            tags.append('<tspan class="emu-t">emulated: not device speed</tspan>')
        elif b.get("noisy"):
            tags.append('<tspan class="noisy-t">noisy</tspan>')
        chart.value(cy, f"{_ms(g['p50_ms'])} · {_ms(g['p90_ms'])} · {_ms(g['p99_ms'])}", tags=" ".join(tags))
    return chart.svg(f"{model}: latency distributions") + _box_legend()


def _parity_bars(records, model: str) -> str:
    rs = [r for r in records if (r.get("model") or "?") == model]
    src = next((r for r in rs if _is_source(r)), None)
    rows = [r for r in rs if not _is_source(r)]
    if not rows:
        return '<p class="empty">No converted targets.</p>'
    use_task = any(_task(r)[1] is not None for r in rows)
    metric = next((_task(r)[0] for r in rows if _task(r)[1] is not None), None) if use_task else None

    def value(r):
        if use_task:
            return _task(r)[1]
        w = _worst(r)
        return _num(w.get("cosine_mean")) if w else None

    vals = [value(r) for r in rows if value(r) is not None]
    ref = _task(src)[1] if (use_task and src) else None
    if vals:
        lo_v = min(vals + ([ref] if ref is not None else []))
        span = max(1.0 - lo_v, 1e-6)
        lo = max(0.0, lo_v - 0.35 * span)
        lo = math.floor(lo / _nice_step(1.0 - lo, 5)) * _nice_step(1.0 - lo, 5)
    else:
        lo = 0.0
    chart = _RowChart(len(rows), row_h=26, right=330)
    sx = _Scale(lo, 1.0, chart.x0, chart.x1)
    ticks = sx.ticks(6)
    fmt = _tick_fmt(ticks, "pct" if use_task else "num")
    axl = (f"{metric or 'task metric'} on the held-out data" if use_task else "worst-output cosine similarity (mean)")
    chart.frame(sx, ticks, fmt, f'{_e(axl)}{" — axis starts at " + _e(fmt(lo)) if lo > 0 else ""}',
                "value (Δ pts vs source)" if use_task else "cosine · max abs")
    for k, r in enumerate(rows):
        v = value(r)
        name = r.get("target") or "?"
        st = r.get("status")
        cy = chart.row(k, name, "b", _dev_name(r) if r.get("device") else None)
        if v is None:
            chart.note(cy, f"no parity result: {_e(STATUS_TEXT.get(st, st))}")
            continue
        p = r.get("parity") or {}
        passed = p.get("passed")
        tip = f"{name} on {_dev_name(r)}: {'passed' if passed else 'FAILED: ' + '; '.join(p.get('failures') or [])}"
        chart.bar(cy, sx(max(v, lo)), PASS if passed else FAIL, tip)
        if use_task:
            d = _task(r)[2]
            txt = _metric_value(metric, v) + (f" ({d:+.2f})" if d is not None else "")
        else:
            w = _worst(r)
            txt = f"{_cos(v)} · {_num(w.get('max_abs')):.2e}" if w and _num(w.get("max_abs")) is not None else _cos(v)
        chart.value(cy, txt, f'<tspan class="{"pass-t" if passed else "fail-t"}">  {"pass" if passed else "FAIL"}'
                             '</tspan>')
    if ref is not None:
        chart.refline(sx(ref), f"source {_metric_value(metric, ref)}")
    return chart.svg(f"{model}: parity per target") + _bars_legend(ref is not None)
