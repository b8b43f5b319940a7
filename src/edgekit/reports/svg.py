"""Hand-written inline SVG for the HTML report: scales and nice ticks, axes, and the row charts (one
row per target over a shared x axis: latency boxes, parity bars), each with its legend. The
trade-off scatter, with its label placement, is in ``scatter``.

Nothing here reads a record: callers pass numbers, names and colours. Everything returns markup
(text) that needs no scripts, fonts or anything else from the network.
"""
from __future__ import annotations

import math

from .fmt import esc

DEVICE_COLOURS = ("#2563eb", "#d97706", "#0d9488", "#7c3aed", "#db2777", "#65a30d", "#0891b2", "#b45309")
PASS, FAIL, MUTED, INK, EMU = "#16a34a", "#dc2626", "#94a3b8", "#1e293b", "#c2410c"


# --------------------------------------------------------------------------------------------
# Scales, ticks and axes


class Scale:
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


def nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _linear_ticks(lo, hi, n=5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = nice_step(hi - lo, n)
    t = math.ceil(lo / step - 1e-9) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(round(t, 12))
        t += step
    return out


def domain(values, log: bool, pad: float = 0.08) -> tuple[float, float, bool]:
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


def size_unit(hi: float) -> tuple[float, str]:
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


def tick_fmt(ticks, kind: str, log: bool = False):
    """A tick formatter: one number of decimals for a linear axis, each tick's own on a log axis."""
    scale, suffix = 1.0, ""
    if kind == "pct":
        scale, suffix = 100.0, "%"
    elif kind == "size":
        unit, name = size_unit(max(ticks) if ticks else 1.0)
        scale, suffix = 1.0 / unit, " " + name
    common = max((_decimals(scale * t) for t in ticks), default=0)

    def fmt(v):
        v *= scale
        if kind == "num" and v and (abs(v) >= 1e5 or abs(v) < 1e-4):
            return f"{v:.0e}"
        return f"{v:.{_decimals(v) if log else common}f}{suffix}"

    return fmt


def text_w(s: str, size: float = 11.0) -> float:
    return 0.6 * size * len(s)


def svg_doc(w: int, h: int, body: list[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{esc(label)}" preserveAspectRatio="xMinYMin meet">' + "".join(body) + "</svg>")


def _xgrid(body, sx: Scale, ticks, fmt, ytop, ybot):
    """A vertical grid line from ``ytop`` to ``ybot`` at each tick, its value written below."""
    for t in ticks:
        x = sx(t)
        body.append(f'<line x1="{x:.1f}" y1="{ytop}" x2="{x:.1f}" y2="{ybot}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{ybot + 16}" class="tick" text-anchor="middle">{esc(fmt(t))}</text>')


def axes(body, sx: Scale, sy: Scale, x0, x1, y0, y1, xfmt, yfmt, xlabel, ylabel):
    body.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" class="plotbg"/>')
    xt, yt = xfmt[1](sx), yfmt[1](sy)
    fx, fy = xfmt[0](xt), yfmt[0](yt)
    _xgrid(body, sx, xt, fx, y1, y0)
    for t in yt:
        y = sy(t)
        body.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{x0 - 7}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(fy(t))}</text>')
    body.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>'
                f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y0}" class="axis"/>')
    body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 38}" class="axlabel" text-anchor="middle">'
                f'{esc(xlabel)}</text>')
    body.append(f'<text transform="translate({x0 - 58},{(y0 + y1) / 2:.1f}) rotate(-90)" class="axlabel" '
                f'text-anchor="middle">{esc(ylabel)}</text>')


# --------------------------------------------------------------------------------------------
# Row charts: one row per target over a shared x axis


class RowChart:
    """Names on the left, the plot in the middle, a column of values on the right; every other row
    striped. ``frame`` first, then ``row`` per row and what goes in it; ``svg`` at the end."""
    W, LBL, TOP = 1200, 250, 24

    def __init__(self, n_rows: int, row_h: int, right: int):
        self.rh, self.x0, self.x1 = row_h, self.LBL, self.W - right
        self.y_end = self.TOP + row_h * n_rows
        self.body: list[str] = []

    def frame(self, sx: Scale, ticks, fmt, axis_label: str, colhead: str):
        """Plot background, x grid and ticks, the axis label and the value column's heading (both markup)."""
        x0, x1, top, y_end = self.x0, self.x1, self.TOP, self.y_end
        self.body.append(f'<rect x="{x0}" y="{top - 6}" width="{x1 - x0}" height="{y_end - top + 6}" class="plotbg"/>')
        _xgrid(self.body, sx, ticks, fmt, top - 6, y_end)
        self.body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y_end + 36}" class="axlabel" text-anchor="middle">'
                         f'{axis_label}</text>')
        self.body.append(f'<text x="{x1 + 12}" y="{top - 10}" class="colhead">{colhead}</text>')

    def row(self, k: int, name: str, name_cls: str, at: str | None = None, at_cls: str = "dim") -> float:
        """Row ``k``'s stripe and its label, ``name`` then `` @ at``; returns the row's centre line."""
        top, rh = self.TOP, self.rh
        cy = top + rh * k + rh / 2 - 3
        if k % 2:
            self.body.append(f'<rect x="0" y="{top + rh * k - 3}" width="{self.W}" height="{rh}" class="stripe"/>')
        at = f'<tspan class="{at_cls}"> @ {esc(at)}</tspan>' if at is not None else ""
        self.body.append(f'<text x="{self.LBL - 12}" y="{cy + 4:.1f}" text-anchor="end" class="rowlab">'
                         f'<tspan class="{name_cls}">{esc(name)}</tspan>{at}</text>')
        return cy

    def value(self, cy: float, text: str, tail: str = "", tags: str = ""):
        """The value column: ``text``, then ``tail`` (markup) in the same text, ``tags`` (markup) after it."""
        self.body.append(f'<text x="{self.x1 + 12}" y="{cy + 4:.1f}" class="rowval">{esc(text)}{tail}</text>')
        if tags:
            self.body.append(f'<text x="{self.x1 + 12 + text_w(text) + 10:.1f}" y="{cy + 4:.1f}" class="rowval">'
                             + tags + "</text>")

    def note(self, cy: float, markup: str):
        """A row with nothing to plot: ``markup`` where the plot would be."""
        self.body.append(f'<text x="{self.x0 + 8}" y="{cy + 4:.1f}" class="nores">{markup}</text>')

    def bar(self, cy: float, x: float, c: str, tip: str):
        """A bar from the left edge of the plot to ``x``."""
        self.body.append(f'<g><title>{esc(tip)}</title><rect x="{self.x0}" y="{cy - 8}" '
                         f'width="{max(x - self.x0, 1.5):.1f}" height="16" rx="2" fill="{c}" fill-opacity="0.85"/></g>')

    def box(self, cy: float, xs: dict, c: str, emu: bool, tip: str):
        """A latency box at the pixel positions ``xs`` of min_ms, p50_ms, p90_ms, p99_ms and max_ms:
        whiskers min…p99, box p50…p90, a thick bar at p50, an open dot at max; dashed when ``emu``."""
        lo, p50, p90, p99, hi = (xs[q] for q in ("min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"))
        dash = ' stroke-dasharray="4 3"' if emu else ""
        self.body.append(f'<g><title>{esc(tip)}</title>'
                         f'<line x1="{lo:.1f}" y1="{cy}" x2="{hi:.1f}" y2="{cy}" stroke="{MUTED}" '
                         f'stroke-width="1"{dash}/>'
                         f'<line x1="{lo:.1f}" y1="{cy}" x2="{p99:.1f}" y2="{cy}" stroke="{INK}" stroke-width="1.6"/>'
                         f'<line x1="{lo:.1f}" y1="{cy - 6}" x2="{lo:.1f}" y2="{cy + 6}" stroke="{INK}" '
                         f'stroke-width="1.6"/>'
                         f'<line x1="{p99:.1f}" y1="{cy - 6}" x2="{p99:.1f}" y2="{cy + 6}" stroke="{INK}" '
                         f'stroke-width="1.6"/>'
                         f'<circle cx="{hi:.1f}" cy="{cy}" r="2.6" fill="#fff" stroke="{MUTED}" stroke-width="1.3"/>'
                         f'<rect x="{p50:.1f}" y="{cy - 8}" width="{max(p90 - p50, 1.5):.1f}" height="16" '
                         f'fill="{c}" fill-opacity="{0.15 if emu else 0.35}" stroke="{EMU if emu else c}" '
                         f'stroke-width="1.4"{dash}/>'
                         f'<line x1="{p50:.1f}" y1="{cy - 9}" x2="{p50:.1f}" y2="{cy + 9}" '
                         f'stroke="{EMU if emu else INK}" stroke-width="3"/></g>')

    def refline(self, x: float, label: str):
        """A dashed reference line across all the rows, labelled above them."""
        top = self.TOP
        self.body.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{self.y_end}" class="refline"/>'
                         f'<text x="{x:.1f}" y="{top - 10}" text-anchor="middle" class="reflab">{esc(label)}</text>')

    def svg(self, label: str) -> str:
        return svg_doc(self.W, self.y_end + 44, self.body, label)


def box_legend() -> str:
    """The key to ``RowChart.box``."""
    return ('<div class="legend"><span class="lg"><svg width="64" height="16">'
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


def bars_legend(with_ref: bool) -> str:
    """The key to ``RowChart.bar`` in pass and fail colours; ``with_ref`` when a reference line is drawn."""
    return (f'<div class="legend"><span class="lg"><span class="sw" style="background:{PASS}"></span>passed parity'
            f'</span><span class="lg"><span class="sw" style="background:{FAIL}"></span>failed parity</span>'
            + ('<span class="lg"><svg width="22" height="14"><line x1="11" y1="0" x2="11" y2="14" '
               'stroke="#334155" stroke-width="1.5" stroke-dasharray="3 2"/></svg>the source model</span>'
               if with_ref else "") + "</div>")
