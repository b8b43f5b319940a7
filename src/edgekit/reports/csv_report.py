"""results.csv: one flat row per record, for spreadsheets and scripts."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from .record import Record
from .results import as_records

CSV_COLUMNS = ("model", "target", "device", "emulated", "status", "status_text", "size_bytes", "task_metric",
               "task_value", "task_delta_points", "cosine_mean", "max_abs", "p50_ms", "p90_ms", "p99_ms",
               "peak_rss_mb", "route", "reason")


def csv_row(r: Record) -> dict:
    """One record's values under :data:`CSV_COLUMNS` (``status``: the raw key; ``status_text``:
    what the other reports print; ``cosine_mean`` and ``max_abs``: of the worst output)."""
    return {"model": r.model, "target": r.target, "device": r.device_name,
            "emulated": "true" if r.emulated else "false", "status": r.status, "status_text": r.status_text,
            "size_bytes": r.size, "task_metric": r.task_metric, "task_value": r.task_value,
            "task_delta_points": r.task_delta, "cosine_mean": r.worst_cosine, "max_abs": r.worst_max_abs,
            "p50_ms": r.p50_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms, "peak_rss_mb": r.bench_value("peak_rss_mb"),
            "route": " > ".join(r.route or ()), "reason": r.reason}


def csv_report(records: Iterable[Record | dict]) -> str:
    """One row per record, flat columns (``CSV_COLUMNS``); empty cells where a value is missing."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in as_records(records):
        row = csv_row(r)
        w.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def write_csv(records: Iterable[Record | dict], path) -> Path:
    from ..core.artifacts import write_text

    path = Path(path)
    write_text(path, csv_report(records))
    return path
