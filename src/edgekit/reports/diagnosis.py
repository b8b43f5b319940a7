"""A diagnosis as Markdown and as a self-contained HTML page: the summary sentences, the worst layers
as a table, and a plot of every layer's error in graph order (input error, output error; the first
layer past the tolerance and the worst layers marked). Reads only a ``core.diagnosis.Diagnosis``."""
from __future__ import annotations

from ..core.diagnosis import Diagnosis, summary, table_rows
from .fmt import esc
from .svg import FAIL, INK, MUTED, PASS, Scale, axes, svg_doc


def diagnosis_markdown(d: Diagnosis, top: int = 15) -> str:
    rows = table_rows(d, top)
    out = [f"# Diagnosis: {d.model} -> {d.target}", ""]
    out += [f"- {line}" for line in summary(d)]
    out += ["", f"Worst {len(rows) - 1} layers by the error each adds (relative L2 error against the float model's "
            "tensor; `cos if float`: the outputs' cosine when that layer alone stays float):", ""]
    out.append("| " + " | ".join(rows[0]) + " |")
    out.append("|" + "---|" * len(rows[0]))
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out) + "\n"


def error_plot(d: Diagnosis, worst: int = 5) -> str:
    """Output error of every layer in graph order (line), its input error (grey), the tolerance (dashed)."""
    layers = list(d.layers)
    if not layers:
        return "<p>No layer could be compared.</p>"
    w, h, x0, x1, y0, y1 = 1100, 360, 80, 1080, 300, 20
    top = max(max(layer.error_out for layer in layers), d.tolerance) * 1.1 or 1.0
    sx, sy = Scale(0, max(len(layers) - 1, 1), x0, x1), Scale(0, top, y0, y1)
    body: list[str] = []
    axes(body, sx, sy, x0, x1, y0, y1, (lambda t: (lambda v: f"{v:g}"), lambda s: s.ticks(6)),
         (lambda t: (lambda v: f"{v:.2g}"), lambda s: s.ticks(5)), "layer (graph order)", "relative error")
    ty = sy(d.tolerance)
    body.append(f'<line x1="{x0}" y1="{ty:.1f}" x2="{x1}" y2="{ty:.1f}" stroke="{FAIL}" stroke-dasharray="5,4"/>'
                f'<text x="{x1 - 4}" y="{ty - 5:.1f}" class="tick" text-anchor="end">tolerance {d.tolerance:.3g}</text>')
    for attr, colour, width in (("error_in", MUTED, 1.2), ("error_out", INK, 1.8)):
        pts = " ".join(f"{sx(i):.1f},{sy(getattr(layer, attr)):.1f}" for i, layer in enumerate(layers))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{width}"/>')
    first = d.first_crossing()
    marks = {layer.name: FAIL for layer in d.ranked()[:worst] if layer.added > 0}
    if first is not None:
        marks[first.name] = PASS if first.name not in marks else FAIL
    for i, layer in enumerate(layers):
        if layer.name in marks:
            cx, cy = sx(i), sy(layer.error_out)
            label = layer.name if len(layer.name) <= 28 else layer.name[:25] + "..."
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{marks[layer.name]}">'
                        f'<title>{esc(layer.name)} ({esc(layer.op)}): {layer.error_in:.3f} -&gt; '
                        f'{layer.error_out:.3f}</title></circle>'
                        f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" class="tick">{esc(label)}</text>')
    return svg_doc(w, h, body, f"relative error per layer of {d.target}")


def diagnosis_section(d: Diagnosis, level: int = 2) -> str:
    """The summary, the plot and the worst layers' table (markup for a page or a report section)."""
    rows = table_rows(d, 20)
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    trs = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    lines = "".join(f"<li>{esc(s)}</li>" for s in summary(d))
    h = f"h{level}"
    return f"""<ul>{lines}</ul>
<{h}>Error per layer, in graph order</{h}>
<p>Black: each layer's output error against the float model (relative L2); grey: its inputs' error. Red dots:
the layers that add the most error; green: the first past the tolerance (red when it is also among the worst).</p>
{error_plot(d)}
<{h}>Worst layers</{h}>
<p><code>cos if float</code>: the final outputs' cosine to the float model when that layer alone stays float.</p>
<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>
"""


def diagnosis_html(d: Diagnosis) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Diagnosis: {esc(d.model)} -&gt; {esc(d.target)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; color: #1e293b; margin: 2em auto; max-width: 1140px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #e2e8f0; text-align: left; }}
.plotbg {{ fill: #f8fafc; }} .grid {{ stroke: #e2e8f0; }} .axis {{ stroke: #64748b; }}
.tick {{ font-size: 11px; fill: #475569; }} .axlabel {{ font-size: 12px; fill: #334155; }}
</style></head><body>
<h1>Diagnosis: {esc(d.model)} &rarr; {esc(d.target)}</h1>
{diagnosis_section(d)}
</body></html>
"""
