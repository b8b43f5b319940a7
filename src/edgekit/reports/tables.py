"""Tables for people: the console table and the Markdown report, both from the records; and
:func:`write_reports`, every report file of a run at once."""
from __future__ import annotations

import textwrap
from collections.abc import Iterable

from .fmt import ci_text, cosine_text, ms_text, num, rel_text
from .legend import columns, data_sentence, legend, noisy_lines, speedup_warning, with_noisy_baselines
from .record import Record
from .results import as_records

WRAP = 120  # the console legend's width (the table is wider)


def row_cells(r: Record | dict) -> list[str]:
    """One record's cells under :func:`~edgekit.reports.legend.columns`, as text."""
    r = Record.coerce(r)
    device = r.device_label + (" (emu)" if r.emulated else "")
    status = r.status_text + (" (noisy)" if r.noisy else "")
    if r.timed and r.emulated:  # emulated timings are never shown as device speed
        p50 = p90 = "emulated"
    else:
        p50, p90 = ms_text(r.p50_ms), ms_text(r.p90_ms)
    target = f"source ({r.label or ''})" if r.is_source else (r.target or "?")
    return [target, device, status, r.size_text, r.task_text, cosine_text(r.worst_cosine),
            r.max_err_text, p50, p90, r.speedup_cell]


def legend_text(records: list[Record]) -> list[str]:
    """The console legend: what each column is measured against, noisy rows, the data."""
    head, items = legend(records)
    w = max(len(t) for t, _ in items)
    out = textwrap.wrap("Legend. " + head, WRAP)
    for term, text in items:
        out += textwrap.wrap(text, WRAP, initial_indent=f"  {term.ljust(w)}  ", subsequent_indent=" " * (w + 4))
    noisy = noisy_lines(records)
    if noisy:
        out += textwrap.wrap("  noisy timings: " + "; ".join(noisy), WRAP, subsequent_indent=" " * 4)
    warn = speedup_warning(records)
    if warn:
        out += textwrap.wrap(warn, WRAP, subsequent_indent="  ")
    data = data_sentence(records)
    if data:
        out += textwrap.wrap(data, WRAP, subsequent_indent="  ")
    return out


def table(records: Iterable[Record | dict]) -> str:
    """The console table, then the failure reasons, the devices' probes, a random-input warning
    and the legend."""
    records = with_noisy_baselines(as_records(records))
    head = columns(records)
    rows = [head] + [row_cells(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: " + textwrap.shorten(r.reason, 220) for r in records if r.reason]
    probes = {}
    for r in records:
        if r.device and r.device.probe and r.device_label not in probes:
            probes[r.device_label] = r.device
    if len(probes) > 1 or any(n != "local" for n in probes):
        notes.append("")
        for name, dev in probes.items():
            p = dev.probe
            rts = ", ".join(f"{k} {v}" for k, v in sorted((p.get("runtimes") or {}).items()))
            emu = ", EMULATED: timings are not device speed" if dev.emulated else ""
            notes.append(f"  device {name} ({dev.kind or '?'}{emu}): "
                         f"{p.get('os')} {p.get('arch')}, {p.get('cpu')} x{p.get('cpu_count')}, "
                         f"{(p.get('mem_total_kb') or 0) / 2**20:.1f} GiB, {_worker(p)}; {rts}")
    if records and records[0].synthetic:
        notes.append("\x1b[31m  RANDOM INPUTS: parity was measured on random data, not real data.\x1b[0m")
    if records:
        notes += ([""] if notes else []) + legend_text(records)
    return "\n".join(lines + ([""] + notes if notes else []))


def markdown(records: Iterable[Record | dict]) -> str:
    """report.md: the table and its legend, then every record's details (reason, route, latency,
    parity, device)."""
    records = with_noisy_baselines(as_records(records))
    if not records:
        return "# edgekit report\n\n(no records)\n"
    first = records[0]
    data = first.data
    out = [f"# edgekit report: {first.model}", "",
           f"Source `{first.source}` (sha256 `{(first.source_sha256 or '')[:16]}`), run `{first.run_id}`, "
           f"edgekit {first.edgekit}.", ""]
    if first.synthetic:
        out += ['<p style="color:red"><b>RANDOM INPUTS: parity was measured on random data; it says little about '
                'accuracy on real data.</b></p>', ""]
    sentence = data_sentence(records)
    if sentence:
        out += [sentence, ""]
    head = columns(records)
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(r)) + " |" for r in records]
    intro, items = legend(records)
    out += ["", f"**Legend.** {intro}", ""] + [f"- **{t}**: {x.replace('|', '&#124;')}" for t, x in items]
    noisy = noisy_lines(records)
    if noisy:
        out += [f"- noisy timings: {'; '.join(noisy)}"]
    warn = speedup_warning(records)
    if warn:
        out += ["", f"**{warn}**"]
    from .training import training_section

    out += [""] + training_section(records) + ["## Details", ""]
    for r in records:
        out.append(f"### {r.target}")
        out += _details(r)
        out.append("")
    return "\n".join(out)


def _details(r: Record) -> list[str]:
    out = []
    if r.reason:
        out.append(f"- **{r.status_text}**: {r.reason}")
    if r.data and r.data.calibration_used is not None and not r.is_source:
        out.append(f"- calibration: {r.data.calibration_text}")
    if r.route:
        out.append(f"- route: {' → '.join(r.route)}" + (" (cached)" if r.cached else ""))
    if r.artifact:
        out.append(f"- artifact: `{r.artifact}`")
    b = r.bench
    if r.timed:
        def f(q):
            return ms_text(r.bench_value(q))

        lo, hi = b.ci95
        head = "- EMULATED latency (QEMU; says nothing of device speed) ms:" if r.emulated else "- latency ms:"
        out.append(f"{head} p50 {ms_text(r.p50_ms)} (95% CI {ci_text(r.p50_ms, lo, hi)}), p90 {f('p90_ms')}, "
                   f"p99 {f('p99_ms')}, mean {f('mean_ms')} ± {f('std_ms')}, min {f('min_ms')}, "
                   f"max {f('max_ms')}, n={b.n}, first {f('first_ms')}, threads {b.threads}, "
                   f"batch {b.batch}" + (" — **noisy**: " + "; ".join(r.noisy_why) if r.noisy else ""))
        if r.bench_value("peak_rss_mb") is not None:
            out.append(f"- runner peak RSS {r.bench_value('peak_rss_mb'):.1f} MB (runner before load "
                       f"{r.bench_value('runner_base_rss_mb') or 0:.1f} MB), load {f('load_ms')} ms")
    p = r.parity
    if p:
        for o in p.outputs or ():
            extra = ""
            if num(o.top1_agreement) is not None:
                extra = f", top-1 agreement {num(o.top1_agreement):.4f}, top-5 {num(o.top5_agreement) or 0:.4f}"
            scale = (f" ({rel_text(o.rel_max_abs)} of the source output's largest |value|, {_sci(o.ref_max_abs)})"
                     if o.rel_max_abs is not None else "")
            out.append(f"- parity `{o.name}` on {p.n} held-out samples: cosine mean {cosine_text(o.cosine_mean)} "
                       f"(min {cosine_text(o.cosine_min)}), max abs error {_sci(o.max_abs)}{scale}, "
                       f"mean abs {_sci(o.mean_abs)}, rel L2 {_sci(o.rel_l2)}{extra}")
        out.append(f"- parity {'passed' if p.passed else 'FAILED: ' + '; '.join(p.failures or ())}")
    probe = r.device.probe if r.device else None
    if probe:
        out.append(f"- device `{r.device_label}`: {probe.get('cpu')} ({probe.get('arch')}, {probe.get('cpu_count')}"
                   f" cores), {_worker(probe)}, runtime {r.runtime} {r.runtime_version}")
    return out


def _sci(v) -> str:
    v = num(v)
    return "-" if v is None else f"{v:.3e}"


def write_reports(records: Iterable[Record | dict], out, title: str | None = None) -> dict:
    """report.md, report.html (self-contained, with plots) and results.csv in ``out``; the page's
    title names the records' models unless ``title`` is given."""
    from pathlib import Path

    from ..core.artifacts import write_text
    from .csv_report import write_csv
    from .html import write_html

    from ..core.diagnosis import Diagnosis, summary

    records = as_records(records)
    out = Path(out)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "csv": out / "results.csv"}
    # what 'edgekit diagnose' wrote for this model's targets goes into the page too
    diagnoses = [Diagnosis.load(p) for p in sorted(out.glob("diagnosis/*/diagnosis.json"))]
    text = markdown(records)
    if diagnoses:
        text += "\n## Int8 diagnosis\n\n" + "".join(
            f"- {d.target}: see diagnosis/{d.target}/diagnosis.md ({summary(d)[1] if len(summary(d)) > 1 else ''})\n"
            for d in diagnoses)
    write_text(paths["markdown"], text)
    write_html(records, paths["html"], title=title, diagnoses=diagnoses)
    write_csv(records, paths["csv"])
    return paths


def _worker(probe: dict) -> str:
    """What ran the runner: its Python, or what a non-Python worker says it is (``worker``)."""
    return f"Python {probe['python']}" if probe.get("python") else probe.get("worker") or "Python ?"
