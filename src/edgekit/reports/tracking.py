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

MLflow is imported lazily. While it logs, its own log lines below WARNING (and those of alembic and
SQLAlchemy, which it drives: "Creating initial MLflow database tables...", "Context impl
SQLiteImpl.") are silenced; the "View run" links it prints to stdout for a tracking server are
caught and the useful ones moved to stderr, so stdout stays the caller's.
For an HTTP server a one-shot ``/health`` request (5 s) runs first, so a server that is down warns
at once instead of MLflow retrying for minutes.

What a record says to MLflow (params, metrics, tags) is in ``tracking_fields``; where the store is
and whether it answers, in ``tracking_store``; this module does the logging.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from .record import Record
from .results import as_records
from .tracking_fields import (
    REASON_MAX,
    parent_metrics,
    parent_params,
    parent_tags,
    read_manifest,
    record_metrics,
    record_params,
    record_tags,
    run_name,
)
from .tracking_store import (
    TrackingFailed,
    artifact_location,
    check_available,
    default_tracking_uri,
    mlflow_client,
    preflight,
    sqlite_path,
)

__all__ = ["TrackingWarning", "log_records", "check_available", "default_tracking_uri", "record_params",
           "record_metrics", "record_tags", "run_name", "REASON_MAX"]

BATCH = 100  # MLflow's limit on params / tags / metrics per batch


class TrackingWarning(UserWarning):
    """Logging to the tracking store failed; the benchmark results are unaffected."""


def log_records(records: Iterable[Record | dict], tracking_uri: str | None = None, experiment: str = "edgekit",
                parent_name: str | None = None, artifacts=()) -> dict:
    """Log ``records`` (from ``edgekit run`` / results.jsonl) to MLflow.

    One run per record (the source row included, tagged ``role=source``), named
    ``<model>/<target>@<device>``. With ``parent_name`` (a sweep) a parent run of that name is
    created and every record's run is its nested child; ``artifacts`` (report files) then go to
    the parent, else to every run. Returns ``{"parent_run_id", "run_ids", "tracking_uri",
    "experiment_id", "warning"}``; ``warning`` is None or the failure, also issued as a
    :class:`TrackingWarning`. Only MissingExtra (MLflow not installed) is raised."""
    records = as_records(records)
    uri = tracking_uri or default_tracking_uri()
    MlflowClient = mlflow_client()  # MissingExtra propagates: tracking was explicitly asked for
    result = {"parent_run_id": None, "run_ids": [], "tracking_uri": uri, "experiment_id": None, "warning": None}
    links = io.StringIO()  # MLflow's "View run" lines, kept off stdout
    try:
        with warnings.catch_warnings(), quiet_logs():  # MLflow's and SQLAlchemy's chatter is not the user's
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            preflight(uri)
            db = sqlite_path(uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(tracking_uri=uri)
            exp_id = _experiment(client, experiment, uri)
            result["experiment_id"] = exp_id
            reports = [Path(a) for a in artifacts or ()]
            if parent_name:
                parent = _start(client, exp_id, parent_name, tags=parent_tags(records), nested_in=None)
                result["parent_run_id"] = parent
                _log_batch(client, parent, parent_params(records), parent_metrics(records), {})
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
        what = msg if isinstance(e, TrackingFailed) else f"{type(e).__name__}: {msg}"
        result["warning"] = (f"experiment tracking to {uri} failed ({what}); "
                             f"{logged} of {len(records)} record(s) logged. The results files are unaffected.")
        if result["parent_run_id"]:
            _terminate_quietly(client, result["parent_run_id"], "FAILED")
        warnings.warn(result["warning"], TrackingWarning, stacklevel=2)
    return result


QUIET_LOGGERS = ("mlflow", "alembic", "sqlalchemy")


@contextlib.contextmanager
def quiet_logs(level: int = logging.WARNING):
    """MLflow's, alembic's and SQLAlchemy's loggers (and their children that set a level of their
    own) at ``level`` or above while the block runs; restored after."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in QUIET_LOGGERS]
    loggers = [logging.getLogger(n) for n in dict.fromkeys([*QUIET_LOGGERS, *names])]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        if lg.level < level:
            lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in saved:
            lg.setLevel(lvl)


def _experiment(client, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if getattr(exp, "lifecycle_stage", "active") == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = artifact_location(uri, name)
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


def _log_one(client, exp_id: str, record: Record, parent: str | None, reports: list[Path],
             links: io.StringIO) -> str:
    manifest = read_manifest(record)
    run_id = _start(client, exp_id, run_name(record), record_tags(record), nested_in=parent)
    try:
        _log_batch(client, run_id, record_params(record, manifest), record_metrics(record, manifest), {})
        if record.manifest and Path(record.manifest).is_file():
            client.log_artifact(run_id, str(record.manifest))  # -> manifest.json
        with tempfile.TemporaryDirectory(prefix="edgekit-track-") as tmp:
            path = Path(tmp) / "record.json"
            path.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True, default=str))
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
    for i in range(0, max(len(ms), len(ps), len(ts), 1), BATCH):
        chunk = (ms[i:i + BATCH], ps[i:i + BATCH], ts[i:i + BATCH])
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
        from ..core.terminal import say

        say("\n".join(keep))


def _terminate_quietly(client, run_id: str, status: str) -> None:
    try:
        _finish(client, run_id, status, io.StringIO())
    except Exception:  # noqa: BLE001 -- already reporting the first failure
        pass
