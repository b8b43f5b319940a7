"""The HTML report, built from the records `edgekit run` writes.

The HTML is one self-contained file: inline CSS and hand-written inline SVG, no scripts, no fonts
or anything else fetched from the network, so it opens from disk anywhere (and attaches to a
ticket as it is). It holds the results table, per-model trade-off scatters (latency against size
and against accuracy, with the Pareto front), latency distributions, parity bars, and the
environment and provenance of every number.

Emulated devices (QEMU) are labelled wherever their timings appear and are left out of the
trade-off scatters: an emulated latency says nothing about the device's speed.

This module puts the page together and writes it; the table sections are in ``sections``, the
figures in ``charts`` and the SVG drawing in ``svg``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .charts import latency_boxes, parity_bars, tradeoffs
from .fmt import esc
from .legend import data_sentence, legend, noisy_lines, speedup_warning, with_noisy_baselines
from .record import Record
from .results import as_records
from .sections import devices_of, environment, highlights, models_of, results_table
from .svg import DEVICE_COLOURS

__all__ = ["html_report", "write_html"]


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
.path{word-break:normal;overflow-wrap:normal;font-size:11px;color:var(--dim)}
.noisy-sp{color:#a16207;font-weight:600}
dl.legend-dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:12.5px;color:#475569;
margin:8px 0}
dl.legend-dl dt{font-weight:600;color:#334155}dl.legend-dl dd{margin:0}
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


def html_report(records: Iterable[Record | dict], title: str | None = None, diagnoses=()) -> str:
    """One self-contained HTML page for ``records`` (one model's run, several runs, or a sweep over
    models and devices): results table, trade-off scatters with the Pareto front, latency
    distributions, parity per target, and the environment and provenance."""
    records = with_noisy_baselines(as_records(records))
    title = title or report_title(records)
    models = models_of(records)
    devices = devices_of(records)
    colours = {}

    def colour_of(dev):
        if dev not in colours:
            colours[dev] = DEVICE_COLOURS[len(colours) % len(DEVICE_COLOURS)]
        return colours[dev]

    for d in devices:  # stable colours in order of first appearance
        colour_of(d)
    run_ids = list(dict.fromkeys(r.run_id for r in records if r.run_id))
    versions = sorted({str(r.edgekit) for r in records if r.edgekit})
    emu_devs = list(dict.fromkeys(r.device_label for r in records if r.emulated))
    synth_models = list(dict.fromkeys(r.model_name for r in records if r.synthetic))

    parts = [f'<header><h1>{esc(title)}</h1><div class="meta">']
    meta = [f"{len(records)} record{'s' if len(records) != 1 else ''}",
            "model" + ("s" if len(models) != 1 else "") + ": " + (", ".join(models) or "-"),
            "device" + ("s" if len(devices) != 1 else "") + ": " + (", ".join(
                d + (" (emulated)" if d in emu_devs else "") for d in devices) or "-"),
            f"run{'s' if len(run_ids) != 1 else ''}: " + (", ".join(run_ids) or "-"),
            "edgekit " + (", ".join(versions) or "?")]
    parts.append(" · ".join(esc(m) for m in meta) + "</div></header>")
    if synth_models:
        parts.append(f'<div class="banner synthetic" role="alert">⚠ RANDOM INPUTS ({esc(", ".join(synth_models))}): '
                     'parity was measured on synthetic random data, not real data. It says little about accuracy on '
                     'real inputs; pass real data to trust these numbers.</div>')
    if emu_devs:
        parts.append(f'<div class="banner emulated">Emulated device{"s" if len(emu_devs) > 1 else ""}: '
                     f'<b>{esc(", ".join(emu_devs))}</b>. Timings there come from an emulator and are labelled '
                     '<i>emulated</i>: they are <b>not device speed</b> and are left out of the trade-off plots. '
                     'Parity on them is real.</div>')
    if not records:
        parts.append('<p class="empty">No records.</p>')
    else:
        multi_run = any(len({r.run_id for r in records if r.model_name == m}) > 1 for m in models)
        parts.append("<h2>Results</h2>")
        parts.append(results_table(records, len(models) > 1, multi_run))
        parts.append(legend_html(records))
        parts.append("<h2>Trade-offs</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{esc(m)}</h3>{highlights(records, m)}'
                         f'{tradeoffs(records, m, colour_of)}</section>')
        parts.append("<h2>Latency distributions</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{esc(m)}</h3>{latency_boxes(records, m, colour_of)}</section>')
        parts.append("<h2>Parity per target</h2>")
        for m in models:
            parts.append(f'<section class="model"><h3>{esc(m)}</h3>{parity_bars(records, m)}</section>')
        if diagnoses:
            from .diagnosis import diagnosis_section

            parts.append("<h2>Int8 diagnosis</h2>")
            for d in diagnoses:
                parts.append(f'<section class="model"><h3>{esc(d.model)} &rarr; {esc(d.target)}</h3>'
                             f'{diagnosis_section(d, 4)}</section>')
        parts.append("<h2>Environment and provenance</h2>")
        parts.append(environment(records))
    parts.append(f'<footer>Written by edgekit {esc(", ".join(versions) or "")}. This page is self-contained: '
                 'no scripts, fonts or images are fetched.</footer>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")


def legend_html(records: list[Record]) -> str:
    """The legend under the results table: the console's and report.md's, word for word."""
    head, items = legend(records)
    out = f'<p class="note"><b>Legend.</b> {esc(head)}</p><dl class="legend-dl">'
    out += "".join(f"<dt>{esc(t)}</dt><dd>{esc(x)}</dd>" for t, x in items) + "</dl>"
    noisy = noisy_lines(records)
    if noisy:
        out += f'<p class="note">Noisy timings: {esc("; ".join(noisy))}.</p>'
    warn = speedup_warning(records)
    if warn:
        out += f'<p class="note noisy-sp">{esc(warn)}</p>'
    data = data_sentence(records)
    return out + (f'<p class="note">{esc(data)}</p>' if data else "")


def report_title(records: Iterable[Record | dict]) -> str:
    """"edgekit report: digits_cnn" (the models in the records; a few, then how many more)."""
    models = models_of(as_records(records))
    if not models:
        return "edgekit report"
    shown = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
    return f"edgekit report: {shown}"


def write_html(records: Iterable[Record | dict], path, title: str | None = None, diagnoses=()) -> Path:
    """Write the HTML report atomically: a temp file beside ``path``, then one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = html_report(records, title, diagnoses)
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
