"""The HTML report and the flat CSV, both built from the records `edgekit run` writes.

The HTML is one self-contained file: inline CSS and hand-written inline SVG, no scripts, no fonts
or anything else fetched from the network, so it opens from disk anywhere (and attaches to a
ticket as it is). It holds the results table, per-model trade-off scatters (latency against size
and against accuracy, with the Pareto front), latency distributions, parity bars, and the
environment and provenance of every number.

Emulated devices (QEMU) are labelled wherever their timings appear and are left out of the
trade-off scatters: an emulated latency says nothing about the device's speed.
"""
from __future__ import annotations

import csv
import html
import io
import math
import os
import tempfile
from pathlib import Path

__all__ = ["html_report", "write_html", "csv_report", "pareto_front", "CSV_COLUMNS"]

CSV_COLUMNS = ("model", "target", "device", "emulated", "status", "size_bytes", "task_metric", "task_value",
               "task_delta_points", "cosine_mean", "max_abs", "p50_ms", "p90_ms", "p99_ms", "peak_rss_mb",
               "route", "reason")

STATUS_TEXT = {"ok": "ok", "reference": "reference", "parity_failed": "parity failed",
               "conversion_failed": "conversion failed", "run_failed": "run failed"}
DEVICE_COLOURS = ("#2563eb", "#d97706", "#0d9488", "#7c3aed", "#db2777", "#65a30d", "#0891b2", "#b45309")
PASS, FAIL, MUTED, INK, EMU = "#16a34a", "#dc2626", "#94a3b8", "#1e293b", "#c2410c"


# --------------------------------------------------------------------------------------------
# Pareto front


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


# --------------------------------------------------------------------------------------------
# Reading records


def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _num(v):
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _dev(r: dict) -> dict:
    return r.get("device") or {}


def _dev_name(r: dict) -> str:
    return _dev(r).get("name") or "-"


def _emulated(r: dict) -> bool:
    return bool(_dev(r).get("emulated"))


def _bench(r: dict) -> dict:
    b = r.get("bench") or {}
    return b if _num(b.get("p50_ms")) is not None else {}


def _worst(r: dict) -> dict | None:
    outs = (r.get("parity") or {}).get("outputs") or []
    if not outs:
        return None
    name = (r.get("parity") or {}).get("worst_output")
    named = [o for o in outs if o.get("name") == name]
    if named:
        return named[0]
    return min(outs, key=lambda o: _num(o.get("cosine_mean")) if _num(o.get("cosine_mean")) is not None else 2.0)


def _task(r: dict) -> tuple:
    """(metric, value, delta points) of a record; the source row carries ``task``."""
    if r.get("status") == "reference" or r.get("target") == "source":
        t = r.get("task") or {}
        return t.get("metric"), _num(t.get("value")), None
    p = r.get("parity") or {}
    return p.get("task_metric"), _num(p.get("task_value")), _num(p.get("task_delta_points"))


def _is_source(r: dict) -> bool:
    return r.get("status") == "reference" or r.get("target") == "source"


def _synthetic(r: dict) -> bool:
    return bool((r.get("data") or {}).get("synthetic") or (r.get("parity") or {}).get("synthetic"))


def _models(records) -> list[str]:
    seen = []
    for r in records:
        m = r.get("model") or "?"
        if m not in seen:
            seen.append(m)
    return seen


def _devices(records) -> list[str]:
    seen = []
    for r in records:
        if r.get("device") and _dev_name(r) not in seen:
            seen.append(_dev_name(r))
    return seen


def _size(n) -> str:
    n = _num(n)
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    if n < 1024 ** 3:
        return f"{n / 1024 / 1024:.2f} MB"
    return f"{n / 1024 ** 3:.2f} GB"


def _ms(v) -> str:
    v = _num(v)
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.1f}"
    return f"{v:#.3g}" if v >= 0.001 else f"{v:.2e}"


def _pct(v, digits=2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def _metric_value(metric, v) -> str:
    if v is None:
        return "-"
    return _pct(v) if metric in (None, "accuracy", "top1", "top5", "f1", "recall", "precision") else f"{v:.4g}"


def _cos(c) -> str:
    c = _num(c)
    return "-" if c is None else f"{c:.6f}"


def _short(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


# --------------------------------------------------------------------------------------------
# SVG primitives


class _Scale:
    """Maps a data interval onto a pixel interval, linearly or on a log scale, with nice ticks."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False):
        self.lo, self.hi, self.a, self.b, self.log = lo, hi, a, b, log

    def _t(self, v):
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        lo, hi = self._t(self.lo), self._t(self.hi)
        if hi == lo:
            return (self.a + self.b) / 2
        return self.a + (self._t(max(v, self.lo) if self.log else v) - lo) / (hi - lo) * (self.b - self.a)

    def ticks(self, n: int = 5, unit: float = 1.0) -> list[float]:
        """Nice tick values; ``unit`` makes them nice in that unit (1024 for KB, say)."""
        lo, hi = self.lo / unit, self.hi / unit
        if self.log:
            d0, d1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            found = []
            for mant in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
                ts = [m * 10 ** d for d in range(d0, d1 + 1) for m in mant]
                ts = [t for t in ts if lo <= t <= hi]
                if 5 <= len(ts) <= 13:
                    return [t * unit for t in ts]
                if 2 <= len(ts) <= 13:
                    found.append(ts)
            if found:
                return [t * unit for t in max(found, key=len)]
        return [t * unit for t in _linear_ticks(lo, hi, n)]


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _linear_ticks(lo, hi, n=5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = _nice_step(hi - lo, n)
    t = math.ceil(lo / step - 1e-9) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def _domain(values, log: bool, pad: float = 0.08) -> tuple[float, float, bool]:
    vals = [v for v in values if v is not None and (v > 0 or not log)]
    if not vals:
        return (0.0, 1.0, False)
    lo, hi = min(vals), max(vals)
    if log and hi / lo < 3:
        log = False
    if log:
        if hi == lo:
            return lo / 2, hi * 2, True
        f = (hi / lo) ** pad
        return lo / f, hi * f, True
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        lo, hi = lo - d, hi + d
    else:
        d = (hi - lo) * pad
        lo, hi = lo - d, hi + d
    return lo, hi, False


def _size_unit(hi: float) -> tuple[float, str]:
    for k, name in ((3, "GB"), (2, "MB"), (1, "KB")):
        if hi >= 1024 ** k:
            return 1024.0 ** k, name
    return 1.0, "B"


def _decimals(v: float) -> int:
    """The fewest decimals that write ``v`` (a nice tick value) exactly."""
    for d in range(0, 9):
        if abs(round(v, d) - v) <= 1e-9 * max(1.0, abs(v)):
            return d
    return 9


def _tick_fmt(ticks, kind: str, log: bool = False):
    """A tick formatter: one number of decimals for a linear axis, each tick's own on a log axis."""
    scale, suffix = 1.0, ""
    if kind == "pct":
        scale, suffix = 100.0, "%"
    elif kind == "size":
        unit, name = _size_unit(max(ticks) if ticks else 1.0)
        scale, suffix = 1.0 / unit, " " + name
    common = max((_decimals(scale * t) for t in ticks), default=0)

    def fmt(v):
        v *= scale
        if kind == "num" and v and (abs(v) >= 1e5 or abs(v) < 1e-4):
            return f"{v:.0e}"
        return f"{v:.{_decimals(v) if log else common}f}{suffix}"

    return fmt


def _text_w(s: str, size: float = 11.0) -> float:
    return 0.6 * size * len(s)


def _svg(w: int, h: int, body: list[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{_e(label)}" preserveAspectRatio="xMinYMin meet">' + "".join(body) + "</svg>")


def _axes(body, sx: _Scale, sy: _Scale, x0, x1, y0, y1, xfmt, yfmt, xlabel, ylabel):
    body.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" class="plotbg"/>')
    xt, yt = xfmt[1](sx), yfmt[1](sy)
    fx, fy = xfmt[0](xt), yfmt[0](yt)
    for t in xt:
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y0}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{y0 + 16}" class="tick" text-anchor="middle">{_e(fx(t))}</text>')
    for t in yt:
        y = sy(t)
        body.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{x0 - 7}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_e(fy(t))}</text>')
    body.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>'
                f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y0}" class="axis"/>')
    body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 38}" class="axlabel" text-anchor="middle">'
                f'{_e(xlabel)}</text>')
    body.append(f'<text transform="translate({x0 - 58},{(y0 + y1) / 2:.1f}) rotate(-90)" class="axlabel" '
                f'text-anchor="middle">{_e(ylabel)}</text>')


def _place_labels(items, obstacles, bounds) -> list[tuple]:
    """Greedy label placement. ``items``: (x, y, text, r, short). For each, try eight spots around
    the point for ``text``, then for ``short`` (a number keyed under the plot); take the first that
    overlaps no placed label, no other point and stays in the plot, else the least bad spot.
    Returns (tx, ty, anchor, text used) per item."""
    x0, y0, x1, y1 = bounds
    placed, out = [], []

    def overlap(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for x, y, text, r, short in items:
        best, best_cost = None, math.inf
        for s in (text, short):
            w, g = _text_w(s), r + 3
            spots = [(x + g, y + 4, "start"), (x - g, y + 4, "end"), (x, y - g - 2, "middle"),
                     (x, y + g + 10, "middle"), (x + g - 2, y - g, "start"), (x - g + 2, y - g, "end"),
                     (x + g - 2, y + g + 8, "start"), (x - g + 2, y + g + 8, "end")]
            for tx, ty, anchor in spots:
                left = tx if anchor == "start" else tx - w if anchor == "end" else tx - w / 2
                box = (left - 1, ty - 10, left + w + 1, ty + 2)
                cost = sum(overlap(box, q) for q in placed)
                cost += sum(overlap(box, o) for o in obstacles if not (o[0] <= x <= o[2] and o[1] <= y <= o[3]))
                cost += 40 * (max(0, x0 - box[0]) + max(0, box[2] - x1) + max(0, y1 - box[1]) + max(0, box[3] - y0))
                if cost < best_cost:
                    best, best_cost = (tx, ty, anchor, s, box), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        placed.append(best[4])
        out.append(best[:4])
    return out


def _scatter(points, fronts, xkind, ykind, xlabel, ylabel, label: str, ylog: bool | None = None,
             y_hi_cap=None) -> tuple[str, set]:
    """An SVG scatter. points: dicts x, y, text, num, colour, kind (front|ok|failed|source), tip;
    fronts: (colour, [point indices in drawing order]). Returns the SVG and the numbers of the
    points whose label did not fit and that show their number instead."""
    W, H = 600, 380
    x0, x1, y1, y0 = 76, W - 16, 14, H - 50
    xlo, xhi, xlog = _domain([p["x"] for p in points], log=True)
    ylo, yhi, ylg = _domain([p["y"] for p in points], log=True if ylog is None else ylog, pad=0.12)
    if y_hi_cap is not None and yhi > y_hi_cap:  # accuracies: no ticks above 100%, a little room
        yhi = max(y_hi_cap, max(p["y"] for p in points)) + (y_hi_cap - ylo) * 0.05
    sx, sy = _Scale(xlo, xhi, x0, x1, xlog), _Scale(ylo, yhi, y0, y1, ylg)

    def ticks_for(kind, cap=None):
        def make(scale):
            unit = _size_unit(scale.hi)[0] if kind == "size" else 1.0
            ts = scale.ticks(6, unit)
            return [t for t in ts if cap is None or t <= cap + 1e-12]
        return make

    xt, yt = ticks_for(xkind), ticks_for(ykind, y_hi_cap)
    body: list[str] = []
    _axes(body, sx, sy, x0, x1, y0, y1, (lambda ts: _tick_fmt(ts, xkind, xlog), xt),
          (lambda ts: _tick_fmt(ts, ykind, ylg), yt), xlabel + (" (log)" if xlog else ""),
          ylabel + (" (log)" if ylg else ""))
    for colour, idx in fronts:
        if len(idx) >= 2:
            pts = " ".join(f"{sx(points[i]['x']):.1f},{sy(points[i]['y']):.1f}" for i in idx)
            body.append(f'<polyline points="{pts}" class="front-halo"/>'
                        f'<polyline points="{pts}" class="front" stroke="{colour}"/>')
    rank = {"front": 0, "source": 1, "ok": 2, "failed": 3}
    order = sorted(range(len(points)), key=lambda i: -rank[points[i]["kind"]])  # the front drawn last
    obstacles, items = [], []
    for i in order:
        p = points[i]
        x, y, c = sx(p["x"]), sy(p["y"]), p["colour"]
        tip = f"<title>{_e(p['tip'])}</title>"
        if p["kind"] == "front":
            r = 6.5
            body.append(f'<g>{tip}<circle cx="{x:.1f}" cy="{y:.1f}" r="{r + 3.5}" fill="{c}" fill-opacity="0.18"/>'
                        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{c}" stroke="#fff" stroke-width="1.8"/></g>')
        elif p["kind"] == "ok":
            r = 4.5
            body.append(f'<g>{tip}<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="#fff" stroke="{c}" '
                        f'stroke-width="2"/></g>')
        elif p["kind"] == "source":
            r = 6.5
            body.append(f'<g>{tip}<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" '
                        f'transform="rotate(45 {x:.1f} {y:.1f})" fill="#475569" stroke="#fff" stroke-width="1.5"/></g>')
        else:
            r = 5.5
            body.append(f'<g>{tip}<path d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},{y + 5:.1f}'
                        f'L{x + 5:.1f},{y - 5:.1f}" stroke="{FAIL}" stroke-width="2.6" stroke-linecap="round"/></g>')
        obstacles.append((x - r, y - r, x + r, y + r))
        items.append((x, y, p["text"], r, str(p["num"]), p["kind"]))
    items.sort(key=lambda t: (rank[t[5]], t[0]))
    spots = _place_labels([t[:5] for t in items], obstacles, (x0, y0, x1, y1))
    numbered = set()
    for it, (tx, ty, anchor, text) in zip(items, spots):
        kind = it[5]
        cls = {"front": "plab front-lab", "failed": "plab fail-lab"}.get(kind, "plab")
        if text != it[2]:
            numbered.add(int(text))
            cls += " numlab"
        body.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" class="{cls}">{_e(text)}</text>')
    return _svg(W, H, body, label), numbered


# --------------------------------------------------------------------------------------------
# Sections


def _status_pill(r: dict) -> str:
    st = r.get("status") or "?"
    out = f'<span class="pill st-{_e(st)}">{_e(STATUS_TEXT.get(st, st))}</span>'
    if _bench(r).get("noisy"):
        out += ' <span class="pill st-noisy" title="the machine was noisy while benchmarking">noisy</span>'
    reason = r.get("reason")
    if reason:
        reason = str(reason)
        if len(reason) > 110:
            out += (f'<details class="reason"><summary>{_e(_short(reason, 100))}</summary>'
                    f'<div>{_e(reason)}</div></details>')
        else:
            out += f'<div class="reason">{_e(reason)}</div>'
    return out


def _results_table(records, multi_model: bool, multi_run: bool) -> str:
    head = ["model", "target", "device", "status", "size", "task (Δ pts)", "worst cosine", "max abs",
            "p50 ms", "p90 ms", "speed-up"]
    if multi_run:
        head.append("run")
    num = {"size", "task (Δ pts)", "worst cosine", "max abs", "p50 ms", "p90 ms", "speed-up"}
    nw = {"model", "run"}

    def cl(h):
        return "num" if h in num else "nw" if h in nw else ""

    rows = ["<tr>" + "".join(f'<th class="{cl(h)}">{_e(h)}</th>' for h in head) + "</tr>"]
    prev_model = None
    for r in records:
        b, w = _bench(r), _worst(r)
        metric, tv, delta = _task(r)
        emu = _emulated(r)
        model = r.get("model") or "?"
        cls = ["src-row"] if _is_source(r) else []
        if multi_model and prev_model is not None and model != prev_model:
            cls.append("model-break")
        prev_model = model
        target = "source" if _is_source(r) else (r.get("target") or "?")
        tcell = f'<b>{_e(target)}</b>'
        if _is_source(r) and r.get("label"):
            tcell += f'<div class="sub">{_e(r["label"])}</div>'
        elif r.get("recipe") or r.get("runtime"):
            sub = " · ".join(str(x) for x in (r.get("recipe"), r.get("runtime")) if x)
            tcell += f'<div class="sub">{_e(sub)}</div>'
        dcell = _e(_dev_name(r))
        if emu:
            dcell += ('<div><span class="pill st-emu" title="emulated (QEMU): timings are not device speed">'
                      'emulated</span></div>')
        if tv is not None:
            task = f'<span title="{_e(metric)}">{_metric_value(metric, tv)}</span>'
            if delta is not None:
                dc = "neg" if delta < -0.005 else "pos" if delta > 0.005 else "zero"
                task += f' <span class="delta {dc}">{delta:+.2f}</span>'
        else:
            task = "-"
        if b:
            p50, p90 = _ms(b.get("p50_ms")), _ms(b.get("p90_ms"))
            if emu:
                p50 = f'<span class="emu-val" title="emulated: not device speed">{p50}<sup>emu</sup></span>'
                p90 = f'<span class="emu-val" title="emulated: not device speed">{p90}<sup>emu</sup></span>'
        else:
            p50 = p90 = "-"
        sp = _num(r.get("speedup_vs_source"))
        speed = f"{sp:.2f}×" if sp else ("1.00×" if _is_source(r) and b else "-")
        cos_cell = (f'<span title="{_e(w.get("name"))}: cosine mean {_e(w.get("cosine_mean"))}, min '
                    f'{_e(w.get("cosine_min"))}">{_cos(w.get("cosine_mean"))}</span>') if w else "-"
        mabs = f'{_num(w.get("max_abs")):.2e}' if w and _num(w.get("max_abs")) is not None else "-"
        cells = [_e(model), tcell, dcell, _status_pill(r), _size(r.get("size_bytes")), task, cos_cell, mabs,
                 p50, p90, speed]
        if multi_run:
            cells.append(f'<span class="mono sub">{_e(r.get("run_id"))}</span>')
        rows.append(f'<tr class="{" ".join(cls)}">' + "".join(
            f'<td class="{cl(h)}">{c}</td>' for h, c in zip(head, cells)) + "</tr>")
    return '<div class="tablewrap"><table class="results">' + "".join(rows) + "</table></div>"


def _highlights(records, model: str) -> str:
    rs = [r for r in records if (r.get("model") or "?") == model]
    good = [r for r in rs if r.get("status") == "ok"]
    timed = [r for r in good if _bench(r) and not _emulated(r)]
    bits = []
    if timed:
        f = min(timed, key=lambda r: _bench(r)["p50_ms"])
        sp = _num(f.get("speedup_vs_source"))
        bits.append(("fastest (passed parity)", f"{f.get('target')}", f"p50 {_ms(_bench(f)['p50_ms'])} ms on "
                     f"{_dev_name(f)}" + (f", {sp:.2f}× the source" if sp else "")))
    sized = [r for r in good if _num(r.get("size_bytes"))]
    if sized:
        s = min(sized, key=lambda r: r["size_bytes"])
        bits.append(("smallest (passed parity)", f"{s.get('target')}", _size(s["size_bytes"])))
    tasked = [r for r in good if _task(r)[1] is not None]
    if tasked:
        a = max(tasked, key=lambda r: (_task(r)[1], -(_bench(r).get("p50_ms") or math.inf)))
        m, v, d = _task(a)
        bits.append((f"best {m or 'task metric'}", f"{a.get('target')}",
                     _metric_value(m, v) + (f" ({d:+.2f} pts vs source)" if d is not None else "")))
    n_fail = sum(1 for r in rs if r.get("status") in ("parity_failed", "conversion_failed", "run_failed"))
    n_ok = len(good)
    bits.append(("targets", f"{n_ok} passed", f"{n_fail} failed" if n_fail else "none failed"))
    return '<div class="cards">' + "".join(
        f'<div class="card{" card-bad" if k == "targets" and n_fail else ""}"><div class="k">{_e(k)}</div>'
        f'<div class="v">{_e(v)}</div><div class="d">{_e(d)}</div></div>' for k, v, d in bits) + "</div>"


def _legend(devices_used: list[str], colour_of, extra=()) -> str:
    items = []
    for d in devices_used:
        c = colour_of(d)
        items.append(f'<span class="lg"><svg width="30" height="12"><line x1="1" y1="6" x2="29" y2="6" '
                     f'stroke="{c}" stroke-width="2.5"/><circle cx="15" cy="6" r="4.5" fill="{c}" stroke="#fff" '
                     f'stroke-width="1.2"/></svg>Pareto front on {_e(d)}</span>')
        items.append(f'<span class="lg"><svg width="14" height="12"><circle cx="7" cy="6" r="4" fill="#fff" '
                     f'stroke="{c}" stroke-width="2"/></svg>dominated on {_e(d)}</span>')
    items.append('<span class="lg"><svg width="14" height="12"><rect x="3" y="2" width="8" height="8" '
                 'transform="rotate(45 7 6)" fill="#475569"/></svg>source (reference, not on the front)</span>')
    items.append(f'<span class="lg"><svg width="14" height="12"><path d="M3,2L11,10M3,10L11,2" stroke="{FAIL}" '
                 'stroke-width="2.4" stroke-linecap="round"/></svg>parity failed (never on the front)</span>')
    items += list(extra)
    return '<div class="legend">' + "".join(items) + "</div>"


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
    out.append(_legend(devs, colour_of))
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
    W, LBL, RT = 1200, 250, 370
    x0, x1 = LBL, W - RT
    RH, top = 30, 24
    H = top + RH * len(rows) + 44
    vals = []
    for r in rows:
        b = _bench(r)
        vals += [_num(b.get(k)) for k in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")]
    lo, hi, log = _domain(vals, log=True, pad=0.04)
    sx = _Scale(lo, hi, x0, x1, log)
    ticks = sx.ticks(8)
    fmt = _tick_fmt(ticks, "ms", log)
    y_end = top + RH * len(rows)
    body = [f'<rect x="{x0}" y="{top - 6}" width="{x1 - x0}" height="{y_end - top + 6}" class="plotbg"/>']
    for t in ticks:
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{y_end}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{y_end + 16}" class="tick" text-anchor="middle">{_e(fmt(t))}</text>')
    body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y_end + 36}" class="axlabel" text-anchor="middle">'
                f'latency per inference, ms{" (log)" if log else ""}</text>')
    body.append(f'<text x="{x1 + 12}" y="{top - 10}" class="colhead">p50 · p90 · p99, ms</text>')
    for k, r in enumerate(rows):
        b = _bench(r)
        cy = top + RH * k + RH / 2 - 3
        emu = _emulated(r)
        c = "#64748b" if _is_source(r) else colour_of(_dev_name(r))
        g = {q: _num(b.get(q)) for q in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")}
        g = {q: (v if v is not None else b["p50_ms"]) for q, v in g.items()}
        name = "source" if _is_source(r) else (r.get("target") or "?")
        if k % 2:
            body.append(f'<rect x="0" y="{top + RH * k - 3}" width="{W}" height="{RH}" class="stripe"/>')
        body.append(f'<text x="{LBL - 12}" y="{cy + 4:.1f}" text-anchor="end" class="rowlab">'
                    f'<tspan class="{"b" if not _is_source(r) else "src"}">{_e(name)}</tspan>'
                    f'<tspan class="{"emu-t" if emu else "dim"}"> @ {_e(_dev_name(r))}</tspan></text>')
        xs = {q: sx(v) for q, v in g.items()}
        dash = ' stroke-dasharray="4 3"' if emu else ""
        tip = (f"{name} on {_dev_name(r)}{' (EMULATED: not device speed)' if emu else ''}\n"
               f"min {_ms(g['min_ms'])}  p50 {_ms(g['p50_ms'])}  p90 {_ms(g['p90_ms'])}  p99 {_ms(g['p99_ms'])}  "
               f"max {_ms(g['max_ms'])} ms, n={b.get('n')}")
        body.append(f'<g><title>{_e(tip)}</title>'
                    f'<line x1="{xs["min_ms"]:.1f}" y1="{cy}" x2="{xs["max_ms"]:.1f}" y2="{cy}" stroke="{MUTED}" '
                    f'stroke-width="1"{dash}/>'
                    f'<line x1="{xs["min_ms"]:.1f}" y1="{cy}" x2="{xs["p99_ms"]:.1f}" y2="{cy}" stroke="{INK}" '
                    f'stroke-width="1.6"/>'
                    f'<line x1="{xs["min_ms"]:.1f}" y1="{cy - 6}" x2="{xs["min_ms"]:.1f}" y2="{cy + 6}" '
                    f'stroke="{INK}" stroke-width="1.6"/>'
                    f'<line x1="{xs["p99_ms"]:.1f}" y1="{cy - 6}" x2="{xs["p99_ms"]:.1f}" y2="{cy + 6}" '
                    f'stroke="{INK}" stroke-width="1.6"/>'
                    f'<circle cx="{xs["max_ms"]:.1f}" cy="{cy}" r="2.6" fill="#fff" stroke="{MUTED}" '
                    f'stroke-width="1.3"/>'
                    f'<rect x="{xs["p50_ms"]:.1f}" y="{cy - 8}" width="{max(xs["p90_ms"] - xs["p50_ms"], 1.5):.1f}" '
                    f'height="16" fill="{c}" fill-opacity="{0.15 if emu else 0.35}" stroke="{EMU if emu else c}" '
                    f'stroke-width="1.4"{dash}/>'
                    f'<line x1="{xs["p50_ms"]:.1f}" y1="{cy - 9}" x2="{xs["p50_ms"]:.1f}" y2="{cy + 9}" '
                    f'stroke="{EMU if emu else INK}" stroke-width="3"/></g>')
        txt = f"{_ms(g['p50_ms'])} · {_ms(g['p90_ms'])} · {_ms(g['p99_ms'])}"
        body.append(f'<text x="{x1 + 12}" y="{cy + 4:.1f}" class="rowval">{_e(txt)}</text>')
        tags = []
        if emu:
            tags.append('<tspan class="emu-t">emulated: not device speed</tspan>')
        elif b.get("noisy"):
            tags.append('<tspan class="noisy-t">noisy</tspan>')
        if tags:
            body.append(f'<text x="{x1 + 12 + _text_w(txt) + 10:.1f}" y="{cy + 4:.1f}" class="rowval">'
                        + " ".join(tags) + "</text>")
    legend = ('<div class="legend"><span class="lg"><svg width="64" height="16">'
              f'<line x1="2" y1="8" x2="62" y2="8" stroke="{MUTED}"/><line x1="2" y1="8" x2="48" y2="8" '
              f'stroke="{INK}" stroke-width="1.6"/>'
              f'<line x1="2" y1="3" x2="2" y2="13" stroke="{INK}" stroke-width="1.6"/>'
              f'<line x1="48" y1="3" x2="48" y2="13" stroke="{INK}" stroke-width="1.6"/>'
              f'<rect x="14" y="2" width="18" height="12" fill="{DEVICE_COLOURS[0]}" fill-opacity=".35" '
              f'stroke="{DEVICE_COLOURS[0]}"/><line x1="14" y1="1" x2="14" y2="15" stroke="{INK}" stroke-width="3"/>'
              f'<circle cx="60" cy="8" r="2.4" fill="#fff" stroke="{MUTED}"/></svg>'
              'whiskers min…p99, box p50…p90, thick bar p50 (median), open dot max</span>'
              f'<span class="lg"><svg width="26" height="16"><rect x="2" y="2" width="22" height="12" fill="#fff" '
              f'stroke="{EMU}" stroke-dasharray="4 3"/></svg>dashed: emulated device (not device speed)</span></div>')
    return _svg(W, H, body, f"{model}: latency distributions") + legend


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
    W, LBL, RT = 1200, 250, 330
    x0, x1, RH, top = LBL, W - RT, 26, 24
    H = top + RH * len(rows) + 44
    sx = _Scale(lo, 1.0, x0, x1)
    ticks = sx.ticks(6)
    kind = "pct" if use_task else "num"
    fmt = _tick_fmt(ticks, kind)
    y_end = top + RH * len(rows)
    body = [f'<rect x="{x0}" y="{top - 6}" width="{x1 - x0}" height="{y_end - top + 6}" class="plotbg"/>']
    for t in ticks:
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{y_end}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{y_end + 16}" class="tick" text-anchor="middle">{_e(fmt(t))}</text>')
    axl = (f"{metric or 'task metric'} on the held-out data" if use_task else "worst-output cosine similarity (mean)")
    body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y_end + 36}" class="axlabel" text-anchor="middle">'
                f'{_e(axl)}{" — axis starts at " + _e(fmt(lo)) if lo > 0 else ""}</text>')
    body.append(f'<text x="{x1 + 12}" y="{top - 10}" class="colhead">'
                f'{"value (Δ pts vs source)" if use_task else "cosine · max abs"}</text>')
    for k, r in enumerate(rows):
        v = value(r)
        cy = top + RH * k + RH / 2 - 3
        name = r.get("target") or "?"
        st = r.get("status")
        if k % 2:
            body.append(f'<rect x="0" y="{top + RH * k - 3}" width="{W}" height="{RH}" class="stripe"/>')
        at = f'<tspan class="dim"> @ {_e(_dev_name(r))}</tspan>' if r.get("device") else ""
        body.append(f'<text x="{LBL - 12}" y="{cy + 4:.1f}" text-anchor="end" class="rowlab"><tspan class="b">'
                    f'{_e(name)}</tspan>{at}</text>')
        if v is None:
            body.append(f'<text x="{x0 + 8}" y="{cy + 4:.1f}" class="nores">no parity result: '
                        f'{_e(STATUS_TEXT.get(st, st))}</text>')
            continue
        passed = (r.get("parity") or {}).get("passed")
        c = PASS if passed else FAIL
        xv = sx(max(v, lo))
        p = r.get("parity") or {}
        tip = f"{name} on {_dev_name(r)}: {'passed' if passed else 'FAILED: ' + '; '.join(p.get('failures') or [])}"
        body.append(f'<g><title>{_e(tip)}</title><rect x="{x0}" y="{cy - 8}" width="{max(xv - x0, 1.5):.1f}" '
                    f'height="16" rx="2" fill="{c}" fill-opacity="0.85"/></g>')
        if use_task:
            d = _task(r)[2]
            txt = _metric_value(metric, v) + (f" ({d:+.2f})" if d is not None else "")
        else:
            w = _worst(r)
            txt = f"{_cos(v)} · {_num(w.get('max_abs')):.2e}" if w and _num(w.get("max_abs")) is not None else _cos(v)
        body.append(f'<text x="{x1 + 12}" y="{cy + 4:.1f}" class="rowval">{_e(txt)}'
                    f'<tspan class="{"pass-t" if passed else "fail-t"}">  {"pass" if passed else "FAIL"}'
                    '</tspan></text>')
    if ref is not None:
        xr = sx(ref)
        body.append(f'<line x1="{xr:.1f}" y1="{top - 8}" x2="{xr:.1f}" y2="{y_end}" class="refline"/>'
                    f'<text x="{xr:.1f}" y="{top - 10}" text-anchor="middle" class="reflab">source '
                    f'{_e(_metric_value(metric, ref))}</text>')
    legend = (f'<div class="legend"><span class="lg"><span class="sw" style="background:{PASS}"></span>passed parity'
              f'</span><span class="lg"><span class="sw" style="background:{FAIL}"></span>failed parity</span>'
              + ('<span class="lg"><svg width="22" height="14"><line x1="11" y1="0" x2="11" y2="14" '
                 'stroke="#334155" stroke-width="1.5" stroke-dasharray="3 2"/></svg>the source model</span>'
                 if ref is not None else "") + "</div>")
    return _svg(W, H, body, f"{model}: parity per target") + legend


def _environment(records) -> str:
    out = []
    devs = {}
    for r in records:
        d = r.get("device")
        if not d:
            continue
        name = d.get("name") or "-"
        cur = devs.get(name)
        if cur is None or (not cur.get("probe") and d.get("probe")):
            devs[name] = d
    rows = ["<tr><th>device</th><th>kind</th><th>OS</th><th>arch</th><th>CPU</th><th class=num>cores</th>"
            "<th class=num>memory</th><th>Python</th><th>numpy</th><th>runtimes</th><th>labels</th></tr>"]
    for name, d in devs.items():
        p = d.get("probe") or {}
        emu = (' <span class="pill st-emu">emulated: not device speed</span>' if d.get("emulated") else "")
        rts = ", ".join(f"{k} {v}" for k, v in sorted((p.get("runtimes") or {}).items()))
        labels = ", ".join(f"{k}={v}" for k, v in sorted((d.get("labels") or {}).items()))
        mem = _num(p.get("mem_total_kb"))
        kind = d.get("kind") or ("local" if name == "local" else "-")
        if not p:
            rows.append(f'<tr><td><b>{_e(name)}</b>{emu}</td><td>{_e(kind)}</td><td colspan="9" class="dim">'
                        'not probed (nothing ran there in these records)</td></tr>')
            continue
        else:
            cells = [f"<b>{_e(name)}</b>{emu}", _e(kind),
                     _e(f"{p.get('os') or '-'} {p.get('release') or ''}".strip()), _e(p.get("arch") or "-"),
                     _e(p.get("cpu") or "-"), _e(p.get("cpu_count") or "-"),
                     f"{mem / 2 ** 20:.1f} GiB" if mem else "-", _e(p.get("python") or "-"),
                     _e(p.get("numpy") or "-"), _e(rts or "-"), _e(labels or "-")]
        rows.append("<tr>" + "".join(f'<td class="{"num" if i in (5, 6) else ""}">{c}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    out.append("<h3>Devices</h3>" + '<div class="tablewrap"><table class="env">' + "".join(rows) + "</table></div>")

    runs = {}
    for r in records:
        runs.setdefault((r.get("model") or "?", r.get("run_id")), r)
    rows = ["<tr><th>model</th><th>run</th><th>edgekit</th><th>source</th><th>source sha256</th><th>data</th>"
            "<th class=num>calibration</th><th class=num>evaluation</th><th>notes</th></tr>"]
    for (model, run_id), r in runs.items():
        data = r.get("data") or {}
        syn = _synthetic(r) or any(_synthetic(x) for x in records
                                   if (x.get("model") or "?") == model and x.get("run_id") == run_id)
        notes = "; ".join(str(n) for n in (data.get("notes") or []))
        dcell = _e(data.get("name") or "-")
        if syn:
            dcell += ' <span class="pill st-parity_failed">RANDOM INPUTS</span>'
        rows.append("<tr>" + "".join(f"<td{a}>{c}</td>" for a, c in (
            ("", f"<b>{_e(model)}</b>"), (' class="nw"', f'<span class="mono">{_e(run_id or "-")}</span>'),
            ("", _e(r.get("edgekit") or "-")), ("", f'<span class="mono">{_e(r.get("source") or "-")}</span>'),
            ("", f'<span class="mono hash">{_e(r.get("source_sha256") or "-")}</span>'), ("", dcell),
            (' class="num"', _e(data.get("calibration_samples", "-"))),
            (' class="num"', _e(data.get("evaluation_samples", "-"))), ("", _e(notes or "-")))) + "</tr>")
    out.append("<h3>Runs, sources and data</h3>" + '<div class="tablewrap"><table class="env">' + "".join(rows)
               + "</table></div>")

    arts = {}
    for r in records:
        if _is_source(r):
            continue
        key = (r.get("model") or "?", r.get("target"), r.get("run_id"))
        cur = arts.get(key)
        if cur is None:
            arts[key] = dict(r)
        elif not cur.get("runtime_version") and r.get("runtime_version"):
            cur["runtime_version"] = r["runtime_version"]
    rows = ["<tr><th>model</th><th>target</th><th>recipe</th><th>runtime</th><th>route</th>"
            "<th class=num>size</th><th class=num>convert s</th><th>artifact</th></tr>"]
    for (model, target, _), r in arts.items():
        route = r.get("route") or []
        rcell = ('<span class="route">' + '<span class="arrow">→</span>'.join(
            f'<span class="edge">{_e(s)}</span>' for s in route) + "</span>") if route else '<span class="dim">-</span>'
        if r.get("cached"):
            rcell += ' <span class="pill st-cached">cached</span>'
        rt = " ".join(str(x) for x in (r.get("runtime"), r.get("runtime_version")) if x)
        cs = _num(r.get("convert_s"))
        rows.append("<tr>" + "".join(f"<td{a}>{c}</td>" for a, c in (
            (' class="nw"', _e(model)), (' class="nw"', f"<b>{_e(target)}</b>"),
            (' class="nw"', _e(r.get("recipe") or "-")), (' class="nw"', _e(rt or "-")),
            ("", rcell), (' class="num"', _size(r.get("size_bytes"))),
            (' class="num"', f"{cs:.2f}" if cs is not None else "-"),
            ("", f'<span class="mono path">{_e(r.get("artifact") or "-")}</span>'))) + "</tr>")
    out.append("<h3>Artifacts and conversion routes</h3>" + '<div class="tablewrap"><table class="env">'
               + "".join(rows) + "</table></div>")
    return "".join(out)


_CSS = """
:root{--ink:#1e293b;--dim:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--pass:#16a34a;--fail:#dc2626;--emu:#c2410c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue","Liberation Sans","DejaVu Sans",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 48px}
header h1{margin:0 0 4px;font-size:26px;letter-spacing:-.01em}
header .meta{color:var(--dim);font-size:13px}
h2{font-size:19px;margin:34px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
h2 .model{font-weight:600;color:#334155}
section.model{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 18px 10px;
margin:14px 0}
section.model>h3:first-child{margin-top:2px;font-size:17px}
.banner{border-radius:8px;padding:11px 15px;margin:12px 0;font-size:14px}
.banner.synthetic{background:#fef2f2;border:2px solid var(--fail);color:#991b1b;font-weight:600}
.banner.emulated{background:#fff7ed;border:1px solid #fdba74;color:#9a3412}
.banner.failed{background:#fff;border:1px solid var(--line);color:#334155}
.tablewrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:7px 9px;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
th{background:#f1f5f9;font-weight:600;color:#334155;white-space:nowrap;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:last-child td{border-bottom:0}
tr.src-row td{background:#f8fafc}
tr.model-break td{border-top:2px solid #cbd5e1}
.sub{color:var(--dim);font-size:11.5px}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono","Liberation Mono",monospace;
font-size:12px}
.hash{word-break:break-all;font-size:11px}
.path{word-break:break-all;font-size:11px;color:var(--dim)}
.dim{color:var(--dim)}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:11.5px;font-weight:600;white-space:nowrap}
.st-ok{background:#dcfce7;color:#166534}.st-reference{background:#e2e8f0;color:#334155}
.st-parity_failed{background:#fee2e2;color:#991b1b}.st-conversion_failed{background:#fde68a;color:#78350f}
.st-run_failed{background:#fed7aa;color:#7c2d12}.st-noisy{background:#fef9c3;color:#854d0e}
.st-emu{background:#ffedd5;color:var(--emu);border:1px dashed #fb923c}.st-cached{background:#e0f2fe;color:#075985}
td.nw,.nw,table.results b,table.results .sub{white-space:nowrap}
figcaption .better{font-weight:600;color:var(--pass);font-size:12px;margin-left:10px}
.numkey .num{display:inline-block;min-width:16px;padding:0 4px;border-radius:4px;background:#e2e8f0;
font-weight:700;font-size:11px;text-align:center}
svg .numlab{font-weight:700;fill:#334155}
.reason{color:#7f1d1d;font-size:12px;margin-top:3px;max-width:380px}
details.reason summary{cursor:pointer}
details.reason div{white-space:pre-wrap;word-break:break-word;margin-top:4px;color:#450a0a}
.delta{font-size:11.5px}.delta.neg{color:var(--fail)}.delta.pos{color:var(--pass)}.delta.zero{color:var(--dim)}
.emu-val{color:var(--emu);font-style:italic}.emu-val sup{font-size:9px;margin-left:2px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0 10px}
.card{flex:1 1 200px;border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:#fbfdff}
.card .k{font-size:11.5px;color:var(--dim);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:17px;font-weight:650}.card .d{font-size:12.5px;color:#475569}
.card-bad{border-color:#fecaca;background:#fff7f7}
.figrow{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;flex:1 1 560px;min-width:0}
figcaption{font-weight:600;font-size:13.5px;margin:4px 0 2px;color:#334155}
svg.chart{width:100%;height:auto;display:block;overflow:visible}
svg .plotbg{fill:#fcfdfe;stroke:none}
svg .grid{stroke:#e8edf3;stroke-width:1}
svg .axis{stroke:#94a3b8;stroke-width:1}
svg .tick{font-size:11px;fill:#64748b}
svg .axlabel{font-size:12px;fill:#334155;font-weight:600}
svg .better{font-size:11.5px;fill:#16a34a;font-weight:600}
svg .front{fill:none;stroke-width:2.4;stroke-linejoin:round}
svg .front-halo{fill:none;stroke:#fff;stroke-width:6;stroke-linejoin:round}
svg .plab{font-size:11px;fill:#475569}
svg .front-lab{fill:#0f172a;font-weight:600}
svg .fail-lab{fill:#b91c1c}
svg .rowlab{font-size:12.5px;fill:#0f172a}
svg .rowlab .b{font-weight:600}svg .rowlab .src{font-weight:600;fill:#475569}
svg .dim{fill:#64748b;font-weight:400}
svg .rowval{font-size:12px;fill:#334155;font-variant-numeric:tabular-nums}
svg .colhead{font-size:11px;fill:#64748b;font-weight:600}
svg .stripe{fill:#f8fafc}
svg .emu-t{fill:#c2410c;font-weight:600;font-style:italic}
svg .noisy-t{fill:#a16207;font-weight:600}
svg .pass-t{fill:#15803d;font-weight:700}svg .fail-t{fill:#dc2626;font-weight:700}
svg .nores{font-size:12px;fill:#92400e;font-style:italic}
svg .refline{stroke:#334155;stroke-width:1.5;stroke-dasharray:4 3}
svg .reflab{font-size:11px;fill:#334155;font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:12px;color:#475569;margin:6px 0 4px}
.legend .lg{display:inline-flex;align-items:center;gap:6px}
.legend .sw{display:inline-block;width:14px;height:10px;border-radius:2px}
.note{font-size:12.5px;color:#475569;margin:6px 0}
.note.emu-note{color:var(--emu)}
.empty{color:var(--dim);font-style:italic}
.route .edge{background:#f1f5f9;border:1px solid #e2e8f0;border-radius:4px;padding:0 5px;font-size:12px;
font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
.route .arrow{color:#94a3b8;margin:0 4px}
footer{margin-top:30px;color:var(--dim);font-size:12px}
@media print{body{background:#fff}section.model,.tablewrap{break-inside:avoid}}
"""


def html_report(records: list[dict], title: str = "edgekit report") -> str:
    """One self-contained HTML page for ``records`` (one model's run, several runs, or a sweep over
    models and devices): results table, trade-off scatters with the Pareto front, latency
    distributions, parity per target, and the environment and provenance."""
    records = [r for r in records if isinstance(r, dict)]
    models = _models(records)
    devices = _devices(records)
    colours = {}

    def colour_of(dev):
        if dev not in colours:
            colours[dev] = DEVICE_COLOURS[len(colours) % len(DEVICE_COLOURS)]
        return colours[dev]

    for d in devices:  # stable colours in order of first appearance
        colour_of(d)
    run_ids = list(dict.fromkeys(r.get("run_id") for r in records if r.get("run_id")))
    versions = sorted({str(r.get("edgekit")) for r in records if r.get("edgekit")})
    emu_devs = list(dict.fromkeys(_dev_name(r) for r in records if _emulated(r)))
    synth_models = list(dict.fromkeys(r.get("model") or "?" for r in records if _synthetic(r)))

    parts = [f'<header><h1>{_e(title)}</h1><div class="meta">']
    meta = [f"{len(records)} record{'s' if len(records) != 1 else ''}",
            "model" + ("s" if len(models) != 1 else "") + ": " + (", ".join(models) or "-"),
            "device" + ("s" if len(devices) != 1 else "") + ": " + (", ".join(
                d + (" (emulated)" if d in emu_devs else "") for d in devices) or "-"),
            f"run{'s' if len(run_ids) != 1 else ''}: " + (", ".join(run_ids) or "-"),
            "edgekit " + (", ".join(versions) or "?")]
    parts.append(" · ".join(_e(m) for m in meta) + "</div></header>")
    if synth_models:
        parts.append(f'<div class="banner synthetic" role="alert">⚠ RANDOM INPUTS ({_e(", ".join(synth_models))}): '
                     'parity was measured on synthetic random data, not real data. It says little about accuracy on '
                     'real inputs; pass real data to trust these numbers.</div>')
    if emu_devs:
        parts.append(f'<div class="banner emulated">Emulated device{"s" if len(emu_devs) > 1 else ""}: '
                     f'<b>{_e(", ".join(emu_devs))}</b>. Timings there come from an emulator and are labelled '
                     '<i>emulated</i>: they are <b>not device speed</b> and are left out of the trade-off plots. '
                     'Parity on them is real.</div>')
    if not records:
        parts.append('<p class="empty">No records.</p>')
    else:
        multi_run = any(len({r.get("run_id") for r in records if (r.get("model") or "?") == m}) > 1 for m in models)
        parts.append("<h2>Results</h2>")
        parts.append(_results_table(records, len(models) > 1, multi_run))
        parts.append('<p class="note">Task: the task metric on the held-out data with its change against the source '
                     'in points. Worst cosine / max abs: the output that differs most from the source. '
                     'Speed-up: source p50 over artifact p50 on the same machine.</p>')
        parts.append("<h2>Trade-offs</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{_e(m)}</h3>{_highlights(records, m)}'
                         f'{_tradeoffs(records, m, colour_of)}</section>')
        parts.append("<h2>Latency distributions</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{_e(m)}</h3>{_latency_boxes(records, m, colour_of)}</section>')
        parts.append("<h2>Parity per target</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{_e(m)}</h3>{_parity_bars(records, m)}</section>')
        parts.append("<h2>Environment and provenance</h2>")
        parts.append(_environment(records))
    parts.append(f'<footer>Written by edgekit {_e(", ".join(versions) or "")}. This page is self-contained: '
                 'no scripts, fonts or images are fetched.</footer>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")


def write_html(records: list[dict], path, title: str = "edgekit report") -> Path:
    """Write the HTML report atomically: a temp file beside ``path``, then one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = html_report(records, title)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def csv_report(records: list[dict]) -> str:
    """One row per record, flat columns (``CSV_COLUMNS``); empty cells where a value is missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        b, wo = _bench(r), _worst(r)
        metric, tv, delta = _task(r)
        row = {
            "model": r.get("model"), "target": r.get("target"), "device": (r.get("device") or {}).get("name"),
            "emulated": "true" if _emulated(r) else "false", "status": r.get("status"),
            "size_bytes": r.get("size_bytes"), "task_metric": metric, "task_value": tv,
            "task_delta_points": delta,
            "cosine_mean": wo.get("cosine_mean") if wo else None, "max_abs": wo.get("max_abs") if wo else None,
            "p50_ms": b.get("p50_ms"), "p90_ms": b.get("p90_ms"), "p99_ms": b.get("p99_ms"),
            "peak_rss_mb": b.get("peak_rss_mb"), "route": " > ".join(r.get("route") or []),
            "reason": r.get("reason")}
        w.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return buf.getvalue()
