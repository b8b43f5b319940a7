"""Reading the records `edgekit run` writes, and the report's table sections.

The readers (``_bench``, ``_task``, ``_worst``, …) and value formatters (``_ms``, ``_size``, …)
are what every part of the report reads a record through; the sections are the results table,
the per-model highlight cards, and the environment and provenance tables (devices, runs and
data, artifacts and conversion routes).
"""
from __future__ import annotations

import math

from .svg import _e

# --------------------------------------------------------------------------------------------
# Reading records

STATUS_TEXT = {"ok": "ok", "reference": "reference", "parity_failed": "parity failed",
               "conversion_failed": "conversion failed", "run_failed": "run failed"}


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
    return _table("results", rows)


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


def _table(cls: str, rows: list[str]) -> str:
    return f'<div class="tablewrap"><table class="{cls}">' + "".join(rows) + "</table></div>"


def _tr(cells) -> str:
    """A table row from (attributes, cell markup) pairs."""
    return "<tr>" + "".join(f"<td{a}>{c}</td>" for a, c in cells) + "</tr>"


def _environment(records) -> str:
    """Where every number comes from: the devices, the runs with their sources and data, the artifacts."""
    return (f"<h3>Devices</h3>{_table('env', _device_rows(records))}"
            f"<h3>Runs, sources and data</h3>{_table('env', _run_rows(records))}"
            f"<h3>Artifacts and conversion routes</h3>{_table('env', _artifact_rows(records))}")


def _device_rows(records) -> list[str]:
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
        cells = [f"<b>{_e(name)}</b>{emu}", _e(kind),
                 _e(f"{p.get('os') or '-'} {p.get('release') or ''}".strip()), _e(p.get("arch") or "-"),
                 _e(p.get("cpu") or "-"), _e(p.get("cpu_count") or "-"),
                 f"{mem / 2 ** 20:.1f} GiB" if mem else "-", _e(p.get("python") or "-"),
                 _e(p.get("numpy") or "-"), _e(rts or "-"), _e(labels or "-")]
        rows.append("<tr>" + "".join(f'<td class="{"num" if i in (5, 6) else ""}">{c}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    return rows


def _run_rows(records) -> list[str]:
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
        rows.append(_tr((
            ("", f"<b>{_e(model)}</b>"), (' class="nw"', f'<span class="mono">{_e(run_id or "-")}</span>'),
            ("", _e(r.get("edgekit") or "-")), ("", f'<span class="mono">{_e(r.get("source") or "-")}</span>'),
            ("", f'<span class="mono hash">{_e(r.get("source_sha256") or "-")}</span>'), ("", dcell),
            (' class="num"', _e(data.get("calibration_samples", "-"))),
            (' class="num"', _e(data.get("evaluation_samples", "-"))), ("", _e(notes or "-")))))
    return rows


def _artifact_rows(records) -> list[str]:
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
        rows.append(_tr((
            (' class="nw"', _e(model)), (' class="nw"', f"<b>{_e(target)}</b>"),
            (' class="nw"', _e(r.get("recipe") or "-")), (' class="nw"', _e(rt or "-")),
            ("", rcell), (' class="num"', _size(r.get("size_bytes"))),
            (' class="num"', f"{cs:.2f}" if cs is not None else "-"),
            ("", f'<span class="mono path">{_e(r.get("artifact") or "-")}</span>'))))
    return rows

