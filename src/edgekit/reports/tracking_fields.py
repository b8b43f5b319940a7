"""What one record says to MLflow: its params (versions, recipe, device, data), metrics (latency,
size, parity of the worst output, the task metric) and tags (role, status, …); and the same for a
sweep's parent run over all its records. Every figure is read through :class:`Record`, so MLflow
shows the numbers the reports print."""
from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterable
from pathlib import Path

from .record import Record

REASON_MAX = 500  # characters of a failure reason kept in the ``reason`` tag (the record artifact has it all)
PARAM_MAX = 6000  # MLflow's limits on one param / tag value
TAG_MAX = 8000
BENCH_METRICS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "peak_rss_mb", "load_ms",
                 "first_ms")
PARITY_METRICS = ("cosine_mean", "cosine_min", "max_abs", "mean_abs", "rel_l2", "top1_agreement", "top5_agreement")


def mlflow_key(name: str) -> str:
    """A valid MLflow key: letters, digits, ``_ - . / : space``; no ``..`` path segments."""
    k = re.sub(r"[^\w.\- /:]", "_", str(name)).strip()
    return re.sub(r"\.{2,}", ".", k) or "_"


def clip_text(value, limit: int) -> str:
    """``value`` as text (JSON for anything not a string), cut to ``limit`` characters."""
    s = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _number(value):
    if isinstance(value, numbers.Real):  # bool, int, float, numpy scalars
        return float(value)
    return None


def read_manifest(record: Record) -> dict:
    """The record's manifest.json ({} when it has none or it cannot be read)."""
    if not record.manifest:
        return {}
    try:
        return json.loads(Path(record.manifest).read_text())
    except (OSError, ValueError):
        return {}


def role(record: Record) -> str:
    return "source" if record.target == "source" else "target"


def run_name(record: Record | dict) -> str:
    r = Record.coerce(record)
    return f"{r.model or '?'}/{r.target or '?'}@{r.device_name or '?'}"


def record_params(record: Record | dict, manifest: dict | None = None) -> dict[str, str]:
    """The params of one record (``manifest``: its manifest.json, read from the record's path if
    not given)."""
    r = Record.coerce(record)
    manifest = read_manifest(r) if manifest is None else manifest
    p: dict[str, object] = {"edgekit": r.edgekit, "model": r.model, "source": r.source,
                            "source_sha256": r.source_sha256, "target": r.target, "format": r.format,
                            "recipe": r.recipe, "runtime": r.runtime, "runtime_version": r.runtime_version}
    if role(r) == "source":
        p["runtime"] = p["runtime"] or r.label
    steps = manifest.get("route") or []
    route = [s.get("edge") for s in steps if s.get("edge")] or list(r.route or ())
    if route:
        p["route"] = " -> ".join(map(str, route))
    versions: dict[str, list[str]] = {}
    for step in steps:
        for pkg, ver in (step.get("versions") or {}).items():
            if ver is not None and str(ver) not in versions.setdefault(pkg, []):
                versions[pkg].append(str(ver))
    for pkg, vers in versions.items():
        p[f"version.{pkg}"] = ", ".join(vers)
    recipe = manifest.get("recipe")
    if isinstance(recipe, dict):
        cal = recipe.get("calibration") or {}
        for k in ("method", "samples", "per_channel", "percentile"):
            if cal.get(k) is not None:
                p[f"recipe.calibration.{k}"] = cal[k]
        if recipe.get("kind"):
            p["recipe.kind"] = recipe["kind"]
    if manifest.get("io_dtype"):
        p["io_dtype"] = manifest["io_dtype"]

    if r.device:
        probe = r.device.probe or {}
        p.update({"device.name": r.device.name, "device.kind": r.device.kind, "device.emulated": r.device.emulated,
                  "device.arch": probe.get("arch"), "device.cpu": probe.get("cpu"),
                  "device.cpu_count": probe.get("cpu_count"),
                  "device.os": " ".join(str(x) for x in (probe.get("os"), probe.get("release")) if x) or None,
                  "device.python": probe.get("python")})
        for k, v in (r.device.labels or {}).items():
            p[f"device.label.{k}"] = v
        for rt, ver in (probe.get("runtimes") or {}).items():
            p[f"device.runtime.{rt}"] = ver
    if r.data:
        p.update({"data.name": r.data.name, "data.calibration_samples": r.data.calibration_samples,
                  "data.evaluation_samples": r.data.evaluation_samples, "data.synthetic": r.data.synthetic})
        if r.data.calibration_used is not None:
            p["data.calibration_used"] = r.data.calibration_used
    if r.task_metric or (r.parity and r.parity.task_metric):
        p["task_metric"] = r.task_metric or r.parity.task_metric
    if r.bench:
        for k in ("threads", "batch", "warmup"):
            if getattr(r.bench, k) is not None:
                p[f"bench.{k}"] = getattr(r.bench, k)
    return {mlflow_key(k): clip_text(v, PARAM_MAX) for k, v in p.items() if v is not None and v != ""}


def record_metrics(record: Record | dict, manifest: dict | None = None) -> dict[str, float]:
    """The metrics of one record. Parity metrics are those of the worst output (the one the
    reports show: lowest mean cosine); with several outputs each is also logged as
    ``<output>.<metric>``."""
    r = Record.coerce(record)
    manifest = read_manifest(r) if manifest is None else manifest
    m: dict[str, object] = {k: r.bench_value(k) for k in BENCH_METRICS}
    if m["load_ms"] is None and _number(r.load_s) is not None:
        m["load_ms"] = _number(r.load_s) * 1000.0
    if r.bench:
        m["bench_n"] = r.bench.n
        m["bench_noisy"] = r.bench.noisy
    if r.size is not None:
        m["size_bytes"] = r.size
        m["size_mb"] = r.size_mb  # MiB, as the reports print "MB"
    m["convert_s"] = r.convert_s
    for step in manifest.get("route") or []:
        if step.get("edge") and _number(step.get("seconds")) is not None:  # when it was converted
            m[f"convert.{step['edge']}_s"] = step["seconds"]
    m["speedup_vs_source"] = r.speedup_vs_source

    p = r.parity
    if r.worst:
        for k in PARITY_METRICS:
            m[k] = getattr(r.worst, k)
    outputs = (p.outputs or ()) if p else ()
    if len(outputs) > 1:
        for o in outputs:
            for k in PARITY_METRICS:
                m[f"{o.name or 'output'}.{k}"] = getattr(o, k)
    if p and "passed" in p.json_keys:
        m["parity_passed"] = p.passed
    if p and p.task_metric:
        m[p.task_metric] = p.task_value
        m[f"{p.task_metric}_source"] = p.task_source
        m["task_delta_points"] = p.task_delta_points
    if r.task and r.task.metric:  # the source row's own task metric
        m[r.task.metric] = r.task.value
    out = {}
    for k, v in m.items():
        f = _number(v)
        if f is not None and f == f:  # NaN never reaches MLflow
            out[mlflow_key(k)] = f
    return out


def record_tags(record: Record | dict) -> dict[str, str]:
    """``status`` is the raw key (for searches: ``tags.status != 'ok'``), ``status_text`` what the
    reports print."""
    r = Record.coerce(record)
    t: dict[str, object] = {
        "role": role(r),
        "status": r.status,
        "status_text": r.status_text if r.status else None,
        "reason": clip_text(r.reason, REASON_MAX) if r.reason else None,
        "emulated": r.device.emulated if r.device else None,
        "synthetic_data": r.data.synthetic if r.data and r.data.synthetic is not None else
        (r.parity.synthetic if r.parity else None),
        "model": r.model,
        "target": r.target,
        "recipe": r.recipe,
        "device": r.device_name,
        "edgekit.run_id": r.run_id,
        "cached": r.cached,
        "noisy": r.bench.noisy if r.bench else None,
    }
    out = {}
    for k, v in t.items():
        if v is None:
            continue
        out[mlflow_key(k)] = clip_text(str(v).lower() if isinstance(v, bool) else v, TAG_MAX)
    return out


def _common(values: Iterable):
    """The one value every record shares (ignoring missing ones), or None."""
    vals = {json.dumps(v, sort_keys=True, default=str) for v in values if v is not None}
    return json.loads(vals.pop()) if len(vals) == 1 else None


def parent_tags(records: list[Record]) -> dict:
    t = {"role": "sweep"}
    for tag, v in (("model", _common(r.model for r in records)),
                   ("edgekit.run_id", _common(r.run_id for r in records))):
        if v is not None:
            t[tag] = clip_text(v, TAG_MAX)
    return t


def parent_params(records: list[Record]) -> dict:
    p = {}
    for key in ("edgekit", "model", "source", "source_sha256"):
        v = _common(getattr(r, key) for r in records)
        if v is not None:
            p[key] = clip_text(v, PARAM_MAX)
    data = _common(r.data.to_json() if r.data else None for r in records) or {}
    for k in ("name", "calibration_samples", "evaluation_samples", "synthetic"):
        if data.get(k) is not None:
            p[f"data.{k}"] = clip_text(data[k], PARAM_MAX)
    targets = sorted({str(r.target) for r in records if r.target not in (None, "source")})
    devices = sorted({str(r.device_name) for r in records if r.device})
    if targets:
        p["targets"] = clip_text(", ".join(targets), PARAM_MAX)
    if devices:
        p["devices"] = clip_text(", ".join(devices), PARAM_MAX)
    return p


def parent_metrics(records: list[Record]) -> dict:
    rows = [r for r in records if role(r) == "target"]
    return {"records": float(len(rows)), "ok": float(sum(r.ok for r in rows)),
            "failed": float(sum(r.status not in ("ok", None) for r in rows))}
