"""Tables for people: the console table and the Markdown report, both from the records."""
from __future__ import annotations

import json
import textwrap

COLUMNS = ("target", "device", "status", "size", "task (Δ)", "cosine", "max abs", "p50 ms", "p90 ms", "speed-up")
STATUS = {"ok": "converted", "reference": "reference", "parity_failed": "PARITY FAILED",
          "conversion_failed": "conversion failed", "run_failed": "run failed"}


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def row_cells(r: dict) -> list[str]:
    p = r.get("parity") or {}
    b = r.get("bench") or {}
    worst = next((o for o in p.get("outputs", []) if o["name"] == p.get("worst_output")), None)
    if r.get("status") == "reference" and r.get("task"):
        task = f"{100 * r['task']['value']:.2f}%"
    elif p.get("task_value") is not None:
        task = f"{100 * p['task_value']:.2f}% ({p['task_delta_points']:+.2f})"
    else:
        task = "-"
    dev = r.get("device", {})
    device = dev.get("name", "local") + (" (emu)" if dev.get("emulated") else "")
    status = STATUS.get(r.get("status"), r.get("status", "?"))
    if b.get("noisy"):
        status += " (noisy)"
    emulated = bool(dev.get("emulated"))  # emulated timings are never shown as device speed
    p50 = "emulated" if emulated and b else (f"{b['p50_ms']:.3f}" if b else "-")
    p90 = "emulated" if emulated and b else (f"{b['p90_ms']:.3f}" if b else "-")
    return [r.get("target", "?") if r.get("status") != "reference" else f"source ({r.get('label', '')})",
            device, status, _size(r.get("size_bytes")), task,
            f"{worst['cosine_mean']:.5f}" if worst else "-", f"{worst['max_abs']:.2e}" if worst else "-",
            p50, p90,
            f"{r['speedup_vs_source']:.2f}x" if r.get("speedup_vs_source") else ("1.00x" if r.get("status") ==
                                                                                   "reference" else "-")]


def table(records: list[dict]) -> str:
    rows = [list(COLUMNS)] + [row_cells(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    for r in records:
        if r.get("reason"):
            notes.append(f"  {r['target']}: " + textwrap.shorten(r["reason"], 220))
    probes = {}
    for r in records:
        dev = r.get("device") or {}
        if dev.get("probe") and dev["name"] not in probes:
            probes[dev["name"]] = dev
    if len(probes) > 1 or any(n != "local" for n in probes):
        notes.append("")
        for name, dev in probes.items():
            p = dev["probe"]
            rts = ", ".join(f"{k} {v}" for k, v in sorted(p.get("runtimes", {}).items()))
            notes.append(f"  device {name} ({dev.get('kind', '?')}{', EMULATED: timings are not device speed' if dev.get('emulated') else ''}): "
                         f"{p.get('os')} {p.get('arch')}, {p.get('cpu')} x{p.get('cpu_count')}, "
                         f"{(p.get('mem_total_kb') or 0) / 2**20:.1f} GiB, Python {p.get('python')}; {rts}")
    data = records[0].get("data", {}) if records else {}
    if data.get("synthetic"):
        notes.append("\x1b[31m  RANDOM INPUTS: parity was measured on random data, not real data.\x1b[0m")
    return "\n".join(lines + ([""] + notes if notes else []))


def markdown(records: list[dict]) -> str:
    if not records:
        return "# edgekit report\n\n(no records)\n"
    first = records[0]
    data = first.get("data", {})
    out = [f"# edgekit report: {first['model']}", "",
           f"Source `{first['source']}` (sha256 `{first['source_sha256'][:16]}`), run `{first['run_id']}`, "
           f"edgekit {first['edgekit']}.", ""]
    if data.get("synthetic"):
        out += ['<p style="color:red"><b>RANDOM INPUTS: parity was measured on random data; it says little about '
                'accuracy on real data.</b></p>', ""]
    out += [f"Data `{data.get('name')}`: {data.get('calibration_samples')} calibration samples, "
            f"{data.get('evaluation_samples')} held-out evaluation samples (disjoint). "
            + " ".join(data.get("notes", [])), ""]
    out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(r)) + " |" for r in records]
    out += ["", "## Details", ""]
    for r in records:
        out.append(f"### {r.get('target')}")
        if r.get("reason"):
            out.append(f"- **{STATUS.get(r['status'], r['status'])}**: {r['reason']}")
        if r.get("route"):
            out.append(f"- route: {' → '.join(r['route'])}" + (" (cached)" if r.get("cached") else ""))
        if r.get("artifact"):
            out.append(f"- artifact: `{r['artifact']}`")
        b = r.get("bench")
        if b:
            ci = b.get("median_ci95_ms", [0, 0])
            emu = r.get("device", {}).get("emulated")
            out.append(("- EMULATED latency (QEMU; says nothing of device speed) ms:" if emu else "- latency ms:") + f" p50 {b['p50_ms']:.4f} (95% CI {ci[0]:.4f}–{ci[1]:.4f}), p90 {b['p90_ms']:.4f}, "
                       f"p99 {b['p99_ms']:.4f}, mean {b['mean_ms']:.4f} ± {b['std_ms']:.4f}, min {b['min_ms']:.4f}, "
                       f"max {b['max_ms']:.4f}, n={b['n']}, first {b['first_ms']:.3f}, threads {b['threads']}, "
                       f"batch {b['batch']}" + (" — **noisy machine**" if b.get("noisy") else ""))
            if b.get("peak_rss_mb") is not None:
                out.append(f"- runner peak RSS {b['peak_rss_mb']:.1f} MB (runner before load "
                           f"{b['runner_base_rss_mb']:.1f} MB), load {b.get('load_ms', 0):.1f} ms")
        p = r.get("parity")
        if p:
            for o in p["outputs"]:
                extra = ""
                if o.get("top1_agreement") is not None:
                    extra = f", top-1 agreement {o['top1_agreement']:.4f}, top-5 {o['top5_agreement']:.4f}"
                out.append(f"- parity `{o['name']}` on {p['n']} samples: cosine mean {o['cosine_mean']:.6f} "
                           f"(min {o['cosine_min']:.6f}), max abs {o['max_abs']:.3e}, mean abs {o['mean_abs']:.3e}, "
                           f"rel L2 {o['rel_l2']:.3e}{extra}")
            out.append(f"- parity {'passed' if p['passed'] else 'FAILED: ' + '; '.join(p['failures'])}")
        dev = r.get("device", {}).get("probe")
        if dev:
            out.append(f"- device `{r['device']['name']}`: {dev.get('cpu')} ({dev.get('arch')}, {dev.get('cpu_count')}"
                       f" cores), Python {dev.get('python')}, runtime {r.get('runtime')} {r.get('runtime_version')}")
        out.append("")
    return "\n".join(out)


def load_records(path) -> list[dict]:
    """Records from a results.jsonl file, or from every results.jsonl below a folder."""
    from pathlib import Path

    from ..core.errors import DataError, SourceNotFound

    path = Path(path)
    files = sorted(path.rglob("results.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise SourceNotFound(f"No records at '{path}'.", "Pass a results.jsonl file or a folder holding them.")
    rows = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise DataError(f"'{f}' line {n} is not JSON.", "Pass the records edgekit wrote.") from None
    return rows


def latest_records(records: list[dict], include_source: bool = True) -> dict[tuple, dict]:
    """The newest record per (model, target, device): results files are appended run after run."""
    out: dict[tuple, dict] = {}
    for r in records:
        if r.get("target") == "source" and not include_source:
            continue
        key = (r.get("model"), r.get("target"), (r.get("device") or {}).get("name", "local"))
        if key not in out or str(r.get("run_id", "")) >= str(out[key].get("run_id", "")):
            out[key] = r
    return out


def write_reports(records: list[dict], out, title: str) -> dict:
    """report.md, report.html (self-contained, with plots) and results.csv in ``out``."""
    from pathlib import Path

    from ..core.artifacts import write_text
    from .html import csv_report, write_html

    out = Path(out)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "csv": out / "results.csv"}
    write_text(paths["markdown"], markdown(records))
    write_html(records, paths["html"], title=title)
    write_text(paths["csv"], csv_report(records))
    return paths
