"""Results files: reading records back from results.jsonl, and the newest record per measurement."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .record import Record


def as_records(records: Iterable) -> list[Record]:
    """Records from dicts (as the pipeline produces them) or Records; anything else is dropped."""
    return [Record.coerce(r) for r in records if isinstance(r, (Record, dict))]


def load_records(path) -> list[Record]:
    """Records from a results.jsonl file, or from every results.jsonl below a folder."""
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
                    rows.append(Record.from_json(json.loads(line)))
                except (ValueError, TypeError):
                    raise DataError(f"'{f}' line {n} is not a JSON record.",
                                    "Pass the records edgekit wrote.") from None
    return rows


def latest_records(records: Iterable, include_source: bool = True) -> dict[tuple, Record]:
    """The newest record per (model, target, device): results files are appended run after run."""
    out: dict[tuple, Record] = {}
    for r in as_records(records):
        if r.target == "source" and not include_source:
            continue
        if r.key not in out or str(r.run_id or "") >= str(out[r.key].run_id or ""):
            out[r.key] = r
    return out
