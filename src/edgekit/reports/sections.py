"""The HTML report's table sections, from records: the results table, the per-model highlight
cards, and the environment and provenance tables (devices, runs and data, artifacts and
conversion routes). Every figure comes from :class:`~edgekit.reports.record.Record`."""
from __future__ import annotations

from .fmt import cosine_text, delta_text, esc, metric_text, ms_text, num, path_html, shorten, size_text
from .legend import MAX_ERR, P50, P90, SPEEDUP, WORST_COSINE, task_header
from .record import NOISY_MARK, Record


def models_of(records: list[Record]) -> list[str]:
    """The models in the order they first appear."""
    return list(dict.fromkeys(r.model_name for r in records))


def devices_of(records: list[Record]) -> list[str]:
    """The devices in the order they first appear (records without one left out)."""
    return list(dict.fromkeys(r.device_label for r in records if r.device))


def status_pill(r: Record) -> str:
    """The status (its one text), a noisy flag, and the failure reason (folded when long)."""
    out = f'<span class="pill st-{esc(r.status or "unknown")}">{esc(r.status_text)}</span>'
    if r.noisy:
        out += f' <span class="pill st-noisy" title="{esc("; ".join(r.noisy_why))}">noisy</span>'
    if r.reason:
        reason = str(r.reason)
        if len(reason) > 110:
            out += (f'<details class="reason"><summary>{esc(shorten(reason, 100))}</summary>'
                    f'<div>{esc(reason)}</div></details>')
        else:
            out += f'<div class="reason">{esc(reason)}</div>'
    return out


def results_table(records: list[Record], multi_model: bool, multi_run: bool) -> str:
    task = task_header(records)
    head = ["model", "target", "device", "status", "size", task, WORST_COSINE, MAX_ERR, P50, P90, SPEEDUP]
    if multi_run:
        head.append("run")
    num_cols = {"size", task, WORST_COSINE, MAX_ERR, P50, P90, SPEEDUP}
    nw = {"model", "run"}

    def cl(h):
        return "num" if h in num_cols else "nw" if h in nw else ""

    rows = ["<tr>" + "".join(f'<th class="{cl(h)}">{esc(h)}</th>' for h in head) + "</tr>"]
    prev_model = None
    for r in records:
        cls = ["src-row"] if r.is_source else []
        if multi_model and prev_model is not None and r.model_name != prev_model:
            cls.append("model-break")
        prev_model = r.model_name
        cells = [esc(r.model_name), _target_cell(r), _device_cell(r), status_pill(r), r.size_text, _task_cell(r),
                 _cosine_cell(r), _max_err_cell(r), *_latency_cells(r), _speedup_cell(r)]
        if multi_run:
            cells.append(f'<span class="mono sub">{esc(r.run_id)}</span>')
        rows.append(f'<tr class="{" ".join(cls)}">' + "".join(
            f'<td class="{cl(h)}">{c}</td>' for h, c in zip(head, cells)) + "</tr>")
    return _table("results", rows)


def _target_cell(r: Record) -> str:
    cell = f"<b>{esc(r.name)}</b>"
    if r.is_source and r.label:
        cell += f'<div class="sub">{esc(r.label)}</div>'
    elif r.recipe or r.runtime:
        sub = " · ".join(str(x) for x in (r.recipe, r.runtime) if x)
        cell += f'<div class="sub">{esc(sub)}</div>'
    return cell


def _device_cell(r: Record) -> str:
    cell = esc(r.device_label)
    if r.emulated:
        cell += ('<div><span class="pill st-emu" title="emulated (QEMU): timings are not device speed">'
                 'emulated</span></div>')
    return cell


def _task_cell(r: Record) -> str:
    if r.task_value is None:
        return "-"
    cell = f'<span title="{esc(r.task_metric)}">{metric_text(r.task_metric, r.task_value)}</span>'
    d = r.task_delta
    if d is not None:
        dc = "neg" if d < -0.005 else "pos" if d > 0.005 else "zero"
        cell += f' <span class="delta {dc}">{delta_text(d)}</span>'
    return cell


def _cosine_cell(r: Record) -> str:
    w = r.worst
    if w is None:
        return "-"
    return (f'<span title="{esc(w.name)}: cosine mean {esc(w.cosine_mean)}, min {esc(w.cosine_min)}">'
            f'{cosine_text(r.worst_cosine)}</span>')


def _max_err_cell(r: Record) -> str:
    w = r.worst
    if w is None or num(w.max_abs) is None:
        return "-"
    return (f'<span title="max abs error {esc(w.max_abs)} against a largest source |value| of '
            f'{esc(w.ref_max_abs)}">{esc(r.max_err_text)}</span>')


def _speedup_cell(r: Record) -> str:
    if not r.speedup_warn:
        return r.speedup_text
    return (f'<span class="noisy-sp" title="computed from a noisy timing (this row\'s or the source\'s): '
            f'may be off">{r.speedup_text} {NOISY_MARK}</span>')


def _latency_cells(r: Record) -> tuple[str, str]:
    if not r.timed:
        return "-", "-"
    p50, p90 = ms_text(r.p50_ms), ms_text(r.p90_ms)
    if r.emulated:
        p50 = f'<span class="emu-val" title="emulated: not device speed">{p50}<sup>emu</sup></span>'
        p90 = f'<span class="emu-val" title="emulated: not device speed">{p90}<sup>emu</sup></span>'
    return p50, p90


def highlights(records: list[Record], model: str) -> str:
    """Cards: the fastest, the smallest and the most accurate artifact that passed parity, and counts."""
    rs = [r for r in records if r.model_name == model]
    good = [r for r in rs if r.ok]
    timed = [r for r in good if r.timed and not r.emulated]
    bits = []
    if timed:
        f = min(timed, key=lambda r: r.p50_ms)
        sp = num(f.speedup_vs_source)
        bits.append(("fastest (passed parity)", f"{f.target}", f"p50 {ms_text(f.p50_ms)} ms on "
                     f"{f.device_label}" + (f", {sp:.2f}× the source" if sp else "")
                     + (f" {NOISY_MARK} from a noisy timing" if f.speedup_warn else "")))
    sized = [r for r in good if r.size]
    if sized:
        s = min(sized, key=lambda r: r.size)
        bits.append(("smallest (passed parity)", f"{s.target}", s.size_text))
    tasked = [r for r in good if r.task_value is not None]
    if tasked:
        top = max(r.task_value for r in tasked)
        best = list(dict.fromkeys(r.target for r in tasked if r.task_value == top))
        a = next(r for r in tasked if r.task_value == top)
        d = a.task_delta
        vs = f" ({d:+.2f} pts vs source)" if d is not None else ""
        who = ("all tie" if len(best) == len(set(r.target for r in tasked)) and len(best) > 1
               else ", ".join(best) + (" (tie)" if len(best) > 1 else ""))
        bits.append((f"best {a.task_metric or 'task metric'}", who, metric_text(a.task_metric, top) + vs))
    n_fail = sum(1 for r in rs if r.failed)
    bits.append(("targets", f"{len(good)} passed", f"{n_fail} failed" if n_fail else "none failed"))
    return '<div class="cards">' + "".join(
        f'<div class="card{" card-bad" if k == "targets" and n_fail else ""}"><div class="k">{esc(k)}</div>'
        f'<div class="v">{esc(v)}</div><div class="d">{esc(d)}</div></div>' for k, v, d in bits) + "</div>"


def _table(cls: str, rows: list[str]) -> str:
    return f'<div class="tablewrap"><table class="{cls}">' + "".join(rows) + "</table></div>"


def _tr(cells) -> str:
    """A table row from (attributes, cell markup) pairs."""
    return "<tr>" + "".join(f"<td{a}>{c}</td>" for a, c in cells) + "</tr>"


def environment(records: list[Record]) -> str:
    """Where every number comes from: the devices, the runs with their sources and data, the artifacts."""
    return (f"<h3>Devices</h3>{_table('env', _device_rows(records))}"
            f"<h3>Runs, sources and data</h3>{_table('env', _run_rows(records))}"
            f"<h3>Artifacts and conversion routes</h3>{_table('env', _artifact_rows(records))}")


def _device_rows(records: list[Record]) -> list[str]:
    devs = {}
    for r in records:
        d = r.device
        if not d:
            continue
        cur = devs.get(r.device_label)
        if cur is None or (not cur.probe and d.probe):
            devs[r.device_label] = d
    rows = ["<tr><th>device</th><th>kind</th><th>OS</th><th>arch</th><th>CPU</th><th class=num>cores</th>"
            "<th class=num>memory</th><th>Python</th><th>numpy</th><th>runtimes</th><th>labels</th></tr>"]
    for name, d in devs.items():
        p = d.probe or {}
        emu = (' <span class="pill st-emu">emulated: not device speed</span>' if d.emulated else "")
        rts = ", ".join(f"{k} {v}" for k, v in sorted((p.get("runtimes") or {}).items()))
        labels = ", ".join(f"{k}={v}" for k, v in sorted((d.labels or {}).items()))
        mem = num(p.get("mem_total_kb"))
        kind = d.kind or ("local" if name == "local" else "-")
        if not p:
            rows.append(f'<tr><td><b>{esc(name)}</b>{emu}</td><td>{esc(kind)}</td><td colspan="9" class="dim">'
                        'not probed (nothing ran there in these records)</td></tr>')
            continue
        cells = [f"<b>{esc(name)}</b>{emu}", esc(kind),
                 esc(f"{p.get('os') or '-'} {p.get('release') or ''}".strip()), esc(p.get("arch") or "-"),
                 esc(p.get("cpu") or "-"), esc(p.get("cpu_count") or "-"),
                 f"{mem / 2 ** 20:.1f} GiB" if mem else "-", esc(p.get("python") or "-"),
                 esc(p.get("numpy") or "-"), esc(rts or "-"), esc(labels or "-")]
        rows.append("<tr>" + "".join(f'<td class="{"num" if i in (5, 6) else ""}">{c}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    return rows


def _run_rows(records: list[Record]) -> list[str]:
    runs: dict[tuple, list[Record]] = {}
    for r in records:
        runs.setdefault((r.model_name, r.run_id), []).append(r)
    rows = ["<tr><th>model</th><th>run</th><th>edgekit</th><th>source</th><th>source sha256</th><th>data</th>"
            "<th class=num>calibration available</th><th class=num>evaluation</th><th>split and notes</th></tr>"]
    for (model, run_id), rs in runs.items():
        r = rs[0]
        data = r.data
        notes = "; ".join(str(n) for n in ((data.notes if data else None) or ()))
        if data and data.split:
            check = ("checked disjoint" if data.shared_samples == 0 else
                     f"{data.shared_samples} evaluation samples are also calibration samples"
                     if isinstance(data.shared_samples, int) else "")
            notes = "; ".join(x for x in (f"split: {data.split}", check, notes) if x)
        dcell = esc((data.name if data else None) or "-")
        if any(x.synthetic for x in rs):
            dcell += ' <span class="pill st-parity_failed">RANDOM INPUTS</span>'
        cal = data.calibration_samples if data and data.calibration_samples is not None else "-"
        ev = data.evaluation_samples if data and data.evaluation_samples is not None else "-"
        rows.append(_tr((
            ("", f"<b>{esc(model)}</b>"), (' class="nw"', f'<span class="mono">{esc(run_id or "-")}</span>'),
            ("", esc(r.edgekit or "-")), ("", f'<span class="mono path">{path_html(r.source or "-")}</span>'),
            ("", f'<span class="mono hash">{esc(r.source_sha256 or "-")}</span>'), ("", dcell),
            (' class="num"', esc(cal)), (' class="num"', esc(ev)), ("", esc(notes or "-")))))
    return rows


def _artifact_rows(records: list[Record]) -> list[str]:
    arts: dict[tuple, Record] = {}
    versions: dict[tuple, str] = {}
    for r in records:
        if r.is_source:
            continue
        key = (r.model_name, r.target, r.run_id)
        arts.setdefault(key, r)
        if r.runtime_version and not versions.get(key):
            versions[key] = r.runtime_version  # the first device that loaded it says which version
    rows = ["<tr><th>model</th><th>target</th><th>recipe</th><th>runtime</th><th>route</th>"
            "<th class=num>size</th><th class=num>convert s</th><th>calibration</th><th>artifact</th></tr>"]
    for key, r in arts.items():
        route = r.route or ()
        rcell = ('<span class="route">' + '<span class="arrow">→</span>'.join(
            f'<span class="edge">{esc(s)}</span>' for s in route) + "</span>") if route else \
            '<span class="dim">-</span>'
        if r.cached:
            rcell += ' <span class="pill st-cached">cached</span>'
        rt = " ".join(str(x) for x in (r.runtime, versions.get(key)) if x)
        cs = num(r.convert_s)
        rows.append(_tr((
            (' class="nw"', esc(r.model_name)), (' class="nw"', f"<b>{esc(r.target)}</b>"),
            (' class="nw"', esc(r.recipe or "-")), (' class="nw"', esc(rt or "-")),
            ("", rcell), (' class="num"', size_text(r.size_bytes)),
            (' class="num"', f"{cs:.2f}" if cs is not None else "-"),
            ("", esc(r.data.calibration_text if r.data and r.data.calibration_used is not None else "-")),
            ("", f'<span class="mono path">{path_html(r.artifact or "-")}</span>'))))
    return rows
