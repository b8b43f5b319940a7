"""Experiment tracking: log ``edgekit run`` records to MLflow.

One MLflow run per record, i.e. per (model, target, recipe, device), with the converter
versions, device and data as params, the latency / size / parity numbers as metrics, the
status as tags and the manifest and the record itself as artifacts. The source row is logged
too, as a run tagged ``role=source`` (the baseline every target is compared against in the UI).
A sweep (``parent_name``) groups its runs as nested children of one parent run.

Tracking must never fail a benchmark: :func:`log_records` turns every tracking failure (bad
URI, server down, MLflow error) into a :class:`TrackingWarning` and a ``"warning"`` string in
its result, and returns. The one exception is :class:`~edgekit.core.errors.MissingExtra` when MLflow
is not installed: tracking was explicitly asked for, so silently skipping it would hide a
misconfiguration. Call :func:`check_available` before a long run to fail fast instead.

MLflow is imported lazily. Its logging goes to stderr; the "View run" links it prints to stdout
for a tracking server are caught and the useful ones moved to stderr, so stdout stays the caller's.
For an HTTP server a one-shot ``/health`` request (5 s) runs first, so a server that is down warns
at once instead of MLflow retrying for minutes.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

ENV_URI = "EDGEKIT_TRACKING_URI"
DEFAULT_DIR = "mlruns"  # ./mlruns/mlflow.db and ./mlruns/artifacts/
REASON_MAX = 500  # characters of a failure reason kept in the ``reason`` tag (the record artifact has it all)
_PARAM_MAX = 6000  # MLflow's limits on one param / tag value, and on params/tags per batch
_TAG_MAX = 8000
_BATCH = 100
_PREFLIGHT_S = 5.0  # how long to wait for a tracking server to answer /health


class TrackingWarning(UserWarning):
    """Logging to the tracking store failed; the benchmark results are unaffected."""


class _TrackingFailed(Exception):
    pass


# --- where -------------------------------------------------------------------------------------


def default_tracking_uri() -> str:
    """``$EDGEKIT_TRACKING_URI`` if set, else an embedded SQLite store in the current folder:
    ``sqlite:///<abs>/mlruns/mlflow.db`` (artifacts in ``./mlruns/artifacts``). Nothing needs to
    run for it; ``mlflow ui --backend-store-uri <that uri>`` browses it. Creates nothing."""
    uri = os.environ.get(ENV_URI, "").strip()
    if uri:
        return uri
    return "sqlite:///" + (Path.cwd() / DEFAULT_DIR / "mlflow.db").resolve().as_posix()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), or None for anything else."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]  # "/abs/x.db" (sqlite:////abs/x.db) or "rel/x.db"
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def _artifact_location(uri: str, experiment: str) -> str | None:
    """A ``file:`` URI next to a SQLite store for a new experiment's artifacts (MLflow would
    otherwise put them under ``./mlruns`` of whatever the working folder is); None elsewhere
    (a server decides its own artifact store)."""
    db = _sqlite_path(uri)
    if db is None:
        return None
    safe = re.sub(r"[^\w.-]+", "_", experiment).strip("._") or "experiment"
    return (db.parent / "artifacts" / safe).as_uri()


# --- availability ------------------------------------------------------------------------------


def check_available() -> None:
    """Raise MissingExtra now if MLflow is not installed (call it before a long run)."""
    _mlflow_client()


def _mlflow_client():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        from ..core.errors import MissingExtra

        raise MissingExtra("mlflow", "tracking", "Experiment tracking") from None
    return MlflowClient


def _preflight(uri: str) -> None:
    """For an HTTP tracking server: one short request, no retries. MLflow's own client retries a
    refused connection for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7 with backoff), so a
    server that is down would stall the end of a benchmark; any HTTP answer, even 401/404, counts
    as up."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme not in ("http", "https"):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=_PREFLIGHT_S):  # noqa: S310 (the user's own URI)
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise _TrackingFailed(f"tracking server {uri} is not reachable ({reason})") from None


# --- record -> params / metrics / tags ----------------------------------------------------------


def _key(name: str) -> str:
    """A valid MLflow key: letters, digits, ``_ - . / : space``; no ``..`` path segments."""
    k = re.sub(r"[^\w.\- /:]", "_", str(name)).strip()
    return re.sub(r"\.{2,}", ".", k) or "_"


def _text(value, limit: int) -> str:
    s = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _number(value):
    import numbers

    if isinstance(value, numbers.Real):  # bool, int, float, numpy scalars
        return float(value)
    return None


def _manifest(record: dict) -> dict:
    path = record.get("manifest")
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _role(record: dict) -> str:
    return "source" if record.get("target") == "source" else "target"


def run_name(record: dict) -> str:
    dev = (record.get("device") or {}).get("name") or "?"
    return f"{record.get('model', '?')}/{record.get('target', '?')}@{dev}"


def record_params(record: dict, manifest: dict | None = None) -> dict[str, str]:
    """The params of one record (``manifest``: its manifest.json, read from the record's path if
    not given)."""
    manifest = _manifest(record) if manifest is None else manifest
    p: dict[str, object] = {
        "edgekit": record.get("edgekit"),
        "model": record.get("model"),
        "source": record.get("source"),
        "source_sha256": record.get("source_sha256"),
        "target": record.get("target"),
        "format": record.get("format"),
        "recipe": record.get("recipe"),
        "runtime": record.get("runtime"),
        "runtime_version": record.get("runtime_version"),
    }
    if _role(record) == "source":
        p["runtime"] = p["runtime"] or record.get("label")
    steps = manifest.get("route") or []
    route = [s.get("edge") for s in steps if s.get("edge")] or list(record.get("route") or [])
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

    dev = record.get("device") or {}
    probe = dev.get("probe") or {}
    p.update({
        "device.name": dev.get("name"),
        "device.kind": dev.get("kind"),
        "device.emulated": dev.get("emulated"),
        "device.arch": probe.get("arch"),
        "device.cpu": probe.get("cpu"),
        "device.cpu_count": probe.get("cpu_count"),
        "device.os": " ".join(str(x) for x in (probe.get("os"), probe.get("release")) if x) or None,
        "device.python": probe.get("python"),
    })
    for k, v in (dev.get("labels") or {}).items():
        p[f"device.label.{k}"] = v
    for rt, ver in (probe.get("runtimes") or {}).items():
        p[f"device.runtime.{rt}"] = ver

    data = record.get("data") or {}
    p.update({
        "data.name": data.get("name"),
        "data.calibration_samples": data.get("calibration_samples"),
        "data.evaluation_samples": data.get("evaluation_samples"),
        "data.synthetic": data.get("synthetic"),
    })
    parity = record.get("parity") or {}
    task = record.get("task") or {}
    if parity.get("task_metric") or task.get("metric"):
        p["task_metric"] = parity.get("task_metric") or task.get("metric")
    bench = record.get("bench") or {}
    for k in ("threads", "batch", "warmup"):
        if bench.get(k) is not None:
            p[f"bench.{k}"] = bench[k]
    return {_key(k): _text(v, _PARAM_MAX) for k, v in p.items() if v is not None and v != ""}


_WORST = {"cosine_mean": min, "cosine_min": min, "max_abs": max, "mean_abs": max, "rel_l2": max,
          "top1_agreement": min, "top5_agreement": min}


def record_metrics(record: dict, manifest: dict | None = None) -> dict[str, float]:
    """The metrics of one record. Parity metrics are the worst over the outputs (lowest cosine /
    agreement, highest error); with several outputs each is also logged as ``<output>.<metric>``."""
    manifest = _manifest(record) if manifest is None else manifest
    m: dict[str, object] = {}
    bench = record.get("bench") or {}
    for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "peak_rss_mb",
              "load_ms", "first_ms"):
        m[k] = bench.get(k)
    if m["load_ms"] is None and _number(record.get("load_s")) is not None:
        m["load_ms"] = _number(record["load_s"]) * 1000.0
    m["bench_n"] = bench.get("n")
    m["bench_noisy"] = bench.get("noisy")
    size = _number(record.get("size_bytes"))
    if size is not None:
        m["size_bytes"] = size
        m["size_mb"] = size / (1024 * 1024)  # MiB, as the report prints "MB"
    m["convert_s"] = record.get("convert_s")
    for step in manifest.get("route") or []:
        if step.get("edge") and _number(step.get("seconds")) is not None:  # when it was converted
            m[f"convert.{step['edge']}_s"] = step["seconds"]
    m["speedup_vs_source"] = record.get("speedup_vs_source")

    parity = record.get("parity") or {}
    outputs = [o for o in parity.get("outputs") or [] if isinstance(o, dict)]
    for k, worst in _WORST.items():
        vals = [_number(o.get(k)) for o in outputs]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        if vals:
            m[k] = worst(vals)
    if len(outputs) > 1:
        for o in outputs:
            for k in _WORST:
                m[f"{o.get('name', 'output')}.{k}"] = o.get(k)
    if "passed" in parity:
        m["parity_passed"] = parity["passed"]
    if parity.get("task_metric"):
        name = parity["task_metric"]
        m[name] = parity.get("task_value")
        m[f"{name}_source"] = parity.get("task_source")
        m["task_delta_points"] = parity.get("task_delta_points")
    task = record.get("task") or {}  # the source row's own task metric
    if task.get("metric"):
        m[task["metric"]] = task.get("value")
    out = {}
    for k, v in m.items():
        f = _number(v)
        if f is not None:
            out[_key(k)] = f
    return out


def record_tags(record: dict) -> dict[str, str]:
    dev = record.get("device") or {}
    data = record.get("data") or {}
    parity = record.get("parity") or {}
    t: dict[str, object] = {
        "role": _role(record),
        "status": record.get("status"),
        "reason": _text(record["reason"], REASON_MAX) if record.get("reason") else None,
        "emulated": dev.get("emulated"),
        "synthetic_data": data.get("synthetic") if data.get("synthetic") is not None else parity.get("synthetic"),
        "model": record.get("model"),
        "target": record.get("target"),
        "recipe": record.get("recipe"),
        "device": dev.get("name"),
        "edgekit.run_id": record.get("run_id"),
        "cached": record.get("cached"),
        "noisy": (record.get("bench") or {}).get("noisy"),
    }
    out = {}
    for k, v in t.items():
        if v is None:
            continue
        out[_key(k)] = _text(str(v).lower() if isinstance(v, bool) else v, _TAG_MAX)
    return out


# --- logging -----------------------------------------------------------------------------------


def log_records(records, tracking_uri: str | None = None, experiment: str = "edgekit",
                parent_name: str | None = None, artifacts=()) -> dict:
    """Log ``records`` (from ``edgekit run`` / results.jsonl) to MLflow.

    One run per record (the source row included, tagged ``role=source``), named
    ``<model>/<target>@<device>``. With ``parent_name`` (a sweep) a parent run of that name is
    created and every record's run is its nested child; ``artifacts`` (report files) then go to
    the parent, else to every run. Returns ``{"parent_run_id", "run_ids", "tracking_uri",
    "experiment_id", "warning"}``; ``warning`` is None or the failure, also issued as a
    :class:`TrackingWarning`. Only MissingExtra (MLflow not installed) is raised."""
    records = [r for r in records if isinstance(r, dict)]
    uri = tracking_uri or default_tracking_uri()
    MlflowClient = _mlflow_client()  # MissingExtra propagates: tracking was explicitly asked for
    result = {"parent_run_id": None, "run_ids": [], "tracking_uri": uri, "experiment_id": None, "warning": None}
    links = io.StringIO()  # MLflow's "View run" lines, kept off stdout
    try:
        with warnings.catch_warnings():  # MLflow's and SQLAlchemy's deprecation chatter is not the user's
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            _preflight(uri)
            db = _sqlite_path(uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(tracking_uri=uri)
            exp_id = _experiment(client, experiment, uri)
            result["experiment_id"] = exp_id
            reports = [Path(a) for a in artifacts or ()]
            if parent_name:
                parent = _start(client, exp_id, parent_name, tags=_parent_tags(records), nested_in=None)
                result["parent_run_id"] = parent
                _log_batch(client, parent, _parent_params(records), _parent_metrics(records), {})
                for path in reports:
                    _log_file(client, parent, path, "reports")
            for record in records:
                run_id = _log_one(client, exp_id, record, result["parent_run_id"],
                                  [] if parent_name else reports, links)
                result["run_ids"].append(run_id)
            if result["parent_run_id"]:
                _finish(client, result["parent_run_id"], "FINISHED", links)
        _show_links(result, links)
    except Exception as e:  # noqa: BLE001 -- tracking must never fail a benchmark
        msg = " ".join(str(e).split()) or type(e).__name__
        if len(msg) > 600:
            msg = msg[:597] + "..."
        logged = len(result["run_ids"])
        what = msg if isinstance(e, _TrackingFailed) else f"{type(e).__name__}: {msg}"
        result["warning"] = (f"experiment tracking to {uri} failed ({what}); "
                             f"{logged} of {len(records)} record(s) logged. The results files are unaffected.")
        if result["parent_run_id"]:
            _terminate_quietly(client, result["parent_run_id"], "FAILED")
        warnings.warn(result["warning"], TrackingWarning, stacklevel=2)
    return result


def _experiment(client, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if getattr(exp, "lifecycle_stage", "active") == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = _artifact_location(uri, name)
    try:
        return client.create_experiment(name, artifact_location=location, tags={"edgekit": "true"})
    except Exception:
        exp = client.get_experiment_by_name(name)  # created concurrently by another process
        if exp is None:
            raise
        return exp.experiment_id


def _start(client, exp_id: str, name: str, tags: dict, nested_in: str | None) -> str:
    tags = dict(tags)
    if nested_in:
        tags["mlflow.parentRunId"] = nested_in  # what mlflow.start_run(nested=True) sets
    return client.create_run(exp_id, run_name=name, tags=tags).info.run_id


def _log_one(client, exp_id: str, record: dict, parent: str | None, reports: list[Path],
             links: io.StringIO) -> str:
    manifest = _manifest(record)
    run_id = _start(client, exp_id, run_name(record), record_tags(record), nested_in=parent)
    try:
        _log_batch(client, run_id, record_params(record, manifest), record_metrics(record, manifest), {})
        if record.get("manifest") and Path(record["manifest"]).is_file():
            client.log_artifact(run_id, str(record["manifest"]))  # -> manifest.json
        with tempfile.TemporaryDirectory(prefix="edgekit-track-") as tmp:
            path = Path(tmp) / "record.json"
            path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
            client.log_artifact(run_id, str(path))
        for report in reports:
            _log_file(client, run_id, report, "reports")
    except Exception:
        _terminate_quietly(client, run_id, "FAILED")
        raise
    _finish(client, run_id, "FINISHED", links)
    return run_id


def _log_file(client, run_id: str, path: Path, folder: str) -> None:
    if path.is_file():
        client.log_artifact(run_id, str(path), folder)
    elif path.is_dir():
        client.log_artifacts(run_id, str(path), f"{folder}/{path.name}")
    else:
        warnings.warn(f"tracking: report file {path} does not exist; not logged", TrackingWarning, stacklevel=3)


def _log_batch(client, run_id: str, params: dict, metrics: dict, tags: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(k, v, now, 0) for k, v in metrics.items()]
    ps = [Param(k, v) for k, v in params.items()]
    ts = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, max(len(ms), len(ps), len(ts), 1), _BATCH):
        chunk = (ms[i:i + _BATCH], ps[i:i + _BATCH], ts[i:i + _BATCH])
        if any(chunk):
            client.log_batch(run_id, metrics=chunk[0], params=chunk[1], tags=chunk[2])


def _finish(client, run_id: str, status: str, links: io.StringIO) -> None:
    """``set_terminated``, whose two "View run / View experiment" lines per run (tracking servers
    only) MLflow writes to stdout: caught here, and :func:`_show_links` puts the useful ones on
    stderr once, so stdout stays the caller's (``edgekit run --json | ...``)."""
    with contextlib.redirect_stdout(links):
        client.set_terminated(run_id, status)


def _show_links(result: dict, links: io.StringIO) -> None:
    lines = links.getvalue().splitlines()
    parent = result.get("parent_run_id")
    keep = [line for line in lines if parent and parent in line and "View run" in line][-1:]
    keep += [line for line in lines if "View experiment" in line][-1:]
    if keep:
        print("\n".join(keep), file=sys.stderr)


def _terminate_quietly(client, run_id: str, status: str) -> None:
    try:
        _finish(client, run_id, status, io.StringIO())
    except Exception:  # noqa: BLE001 -- already reporting the first failure
        pass


def _common(records: list[dict], key: str):
    vals = {json.dumps(r.get(key), sort_keys=True, default=str) for r in records if r.get(key) is not None}
    return json.loads(vals.pop()) if len(vals) == 1 else None


def _parent_tags(records: list[dict]) -> dict:
    t = {"role": "sweep"}
    for key, tag in (("model", "model"), ("run_id", "edgekit.run_id")):
        v = _common(records, key)
        if v is not None:
            t[tag] = _text(v, _TAG_MAX)
    return t


def _parent_params(records: list[dict]) -> dict:
    p = {}
    for key in ("edgekit", "model", "source", "source_sha256"):
        v = _common(records, key)
        if v is not None:
            p[key] = _text(v, _PARAM_MAX)
    data = _common(records, "data") or {}
    for k in ("name", "calibration_samples", "evaluation_samples", "synthetic"):
        if data.get(k) is not None:
            p[f"data.{k}"] = _text(data[k], _PARAM_MAX)
    targets = sorted({str(r.get("target")) for r in records if r.get("target") not in (None, "source")})
    devices = sorted({str((r.get("device") or {}).get("name")) for r in records if r.get("device")})
    if targets:
        p["targets"] = _text(", ".join(targets), _PARAM_MAX)
    if devices:
        p["devices"] = _text(", ".join(devices), _PARAM_MAX)
    return p


def _parent_metrics(records: list[dict]) -> dict:
    rows = [r for r in records if _role(r) == "target"]
    return {"records": float(len(rows)),
            "ok": float(sum(r.get("status") == "ok" for r in rows)),
            "failed": float(sum(r.get("status") not in ("ok", None) for r in rows))}
