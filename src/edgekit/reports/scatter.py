"""The trade-off scatter of the HTML report: points, the Pareto fronts it is given, and labels
placed where they overlap nothing. Points that land on the same spot (two targets with the same
latency and size, say) share one label that names them all, so none hides another.

Nothing here reads a record: callers pass numbers, names and colours.
"""
from __future__ import annotations

import math

from .fmt import esc
from .svg import FAIL, Scale, axes, domain, size_unit, svg_doc, text_w, tick_fmt

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
            w, g = text_w(s), r + 3
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


SAME_SPOT_PX = 4.0  # points closer than this (in pixels) share a spot, and one label


def same_spot(xy: list[tuple[float, float]], rank: list[int]) -> list[list[int]]:
    """For each point, the points drawn on the same spot (itself included), best rank first, then
    in the order given: the first of the list carries the spot's label."""
    groups: list[list[int]] = []
    for i in sorted(range(len(xy)), key=lambda i: (rank[i], i)):
        g = next((g for g in groups if math.dist(xy[g[0]], xy[i]) < SAME_SPOT_PX), None)
        if g is None:
            groups.append([i])
        else:
            g.append(i)
    out: list[list[int]] = [[] for _ in xy]
    for g in groups:
        for i in g:
            out[i] = g
    return out


def scatter(points, fronts, xkind, ykind, xlabel, ylabel, label: str, ylog: bool | None = None,
             y_hi_cap=None) -> tuple[str, set]:
    """An SVG scatter. points: dicts x, y, text, num, colour, kind (front|ok|failed|source), tip;
    fronts: (colour, [point indices in drawing order]). Returns the SVG and the numbers of the
    points whose label did not fit and that show their number instead."""
    W, H = 600, 380
    x0, x1, y1, y0 = 76, W - 16, 14, H - 50
    xlo, xhi, xlog = domain([p["x"] for p in points], log=True)
    ylo, yhi, ylg = domain([p["y"] for p in points], log=True if ylog is None else ylog, pad=0.12)
    if y_hi_cap is not None and yhi > y_hi_cap:  # accuracies: no ticks above 100%, a little room
        yhi = max(y_hi_cap, max(p["y"] for p in points)) + (y_hi_cap - ylo) * 0.05
    sx, sy = Scale(xlo, xhi, x0, x1, xlog), Scale(ylo, yhi, y0, y1, ylg)

    def ticks_for(kind, cap=None):
        def make(scale):
            unit = size_unit(scale.hi)[0] if kind == "size" else 1.0
            ts = scale.ticks(6, unit)
            return [t for t in ts if cap is None or t <= cap + 1e-12]
        return make

    xt, yt = ticks_for(xkind), ticks_for(ykind, y_hi_cap)
    body: list[str] = []
    axes(body, sx, sy, x0, x1, y0, y1, (lambda ts: tick_fmt(ts, xkind, xlog), xt),
          (lambda ts: tick_fmt(ts, ykind, ylg), yt), xlabel + (" (log)" if xlog else ""),
          ylabel + (" (log)" if ylg else ""))
    for colour, idx in fronts:
        if len(idx) >= 2:
            pts = " ".join(f"{sx(points[i]['x']):.1f},{sy(points[i]['y']):.1f}" for i in idx)
            body.append(f'<polyline points="{pts}" class="front-halo"/>'
                        f'<polyline points="{pts}" class="front" stroke="{colour}"/>')
    rank = {"front": 0, "source": 1, "ok": 2, "failed": 3}
    order = sorted(range(len(points)), key=lambda i: -rank[points[i]["kind"]])  # the front drawn last
    spot = same_spot([(sx(p["x"]), sy(p["y"])) for p in points], [rank[p["kind"]] for p in points])
    obstacles, items = [], []
    for i in order:
        p = points[i]
        x, y, c = sx(p["x"]), sy(p["y"]), p["colour"]
        others = [points[j]["text"] for j in spot[i] if j != i]
        tip = f"<title>{esc(p['tip'] + (chr(10) + 'same spot as: ' + ', '.join(others) if others else ''))}</title>"
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
        if spot[i][0] == i:  # one label per spot, naming every point there (the best-ranked first)
            items.append((x, y, " / ".join(points[j]["text"] for j in spot[i]), r,
                          ",".join(str(points[j]["num"]) for j in spot[i]), p["kind"]))
    items.sort(key=lambda t: (rank[t[5]], t[0]))
    spots = _place_labels([t[:5] for t in items], obstacles, (x0, y0, x1, y1))
    numbered = set()
    for it, (tx, ty, anchor, text) in zip(items, spots):
        kind = it[5]
        cls = {"front": "plab front-lab", "failed": "plab fail-lab"}.get(kind, "plab")
        if text != it[2]:
            numbered |= {int(n) for n in text.split(",")}
            cls += " numlab"
        body.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" class="{cls}">{esc(text)}</text>')
    return svg_doc(W, H, body, label), numbered


def scatter_legend(devices_used: list[str], colour_of, word: str = "on") -> str:
    """The key to ``scatter``'s markers, one front and one dominated marker per device (or per series:
    ``word`` "of")."""
    items = []
    for d in devices_used:
        c = colour_of(d)
        items.append(f'<span class="lg"><svg width="30" height="12"><line x1="1" y1="6" x2="29" y2="6" '
                     f'stroke="{c}" stroke-width="2.5"/><circle cx="15" cy="6" r="4.5" fill="{c}" stroke="#fff" '
                     f'stroke-width="1.2"/></svg>Pareto front {word} {esc(d)}</span>')
        items.append(f'<span class="lg"><svg width="14" height="12"><circle cx="7" cy="6" r="4" fill="#fff" '
                     f'stroke="{c}" stroke-width="2"/></svg>dominated {word} {esc(d)}</span>')
    items.append('<span class="lg"><svg width="14" height="12"><rect x="3" y="2" width="8" height="8" '
                 'transform="rotate(45 7 6)" fill="#475569"/></svg>source (reference, not on the front)</span>')
    items.append(f'<span class="lg"><svg width="14" height="12"><path d="M3,2L11,10M3,10L11,2" stroke="{FAIL}" '
                 'stroke-width="2.4" stroke-linecap="round"/></svg>parity failed (never on the front)</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


