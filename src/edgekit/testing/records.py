"""The harness's records: one edgekit record per (model, target, device) of a test session, in the
same results JSONL that ``edgekit run`` and sweeps write, so ``edgekit report``, ``edgekit check``
and MLflow tracking read harness runs like any other.

Every measurement (a parity check, golden files, a benchmark, a failed conversion or run) updates
its artifact's record and appends it at once: a session that dies midway keeps what it measured.
Readers take the newest line per (model, target, device), so the last line holds every figure of
the session: parity from one test and latency from another land in one record. Which tests made
it is kept under ``harness.tests``; the budgets ``assert_latency`` checked under ``budgets``.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_RESULTS = Path("edgekit-results") / "results.jsonl"


def default_results_path(junitxml: str | None, rootdir: Path) -> Path:
    """``results.jsonl`` beside pytest's JUnit XML when one is written, else ./edgekit-results/."""
    if junitxml:
        return Path(junitxml).expanduser().resolve().parent / "results.jsonl"
    return (Path(rootdir) / DEFAULT_RESULTS).resolve()


class RecordLog:
    def __init__(self, path: Path | None, run_id: str):
        self.path = Path(path) if path is not None else None
        self.run_id = run_id
        self.rows: dict[tuple, dict] = {}
        self.appended = 0

    def add(self, artifact, test: str | None = None, **fields) -> dict:
        """Merge ``fields`` (parity, bench, status, ...) into the artifact's record on its device,
        append the record, and return it. Fields given as None are left out."""
        key = (artifact.model, artifact.target_name, artifact.slot.name)
        row = self.rows.get(key)
        if row is None:
            row = artifact.record_base()
            row["harness"] = {"tests": []}
            self.rows[key] = row
        if artifact.slot.device is not None:
            try:
                row["device"] = artifact.slot.record()
            except Exception:  # noqa: BLE001  a device that failed: its name and kind still say where
                row.setdefault("device", {"name": artifact.slot.name, "kind": artifact.slot.kind,
                                          "emulated": artifact.slot.emulated, "labels": artifact.slot.labels})
        else:
            row.setdefault("device", {"name": artifact.slot.name, "kind": artifact.slot.kind,
                                      "emulated": artifact.slot.emulated, "labels": artifact.slot.labels})
        if artifact.role:  # checked as a deployment bundle's primary or fallback
            row["deployment_role"] = artifact.role
        for k, v in fields.items():
            if v is None:
                continue
            if k == "budgets":
                row.setdefault("budgets", {}).update(v)
            else:
                row[k] = v
        test = test or artifact.harness.current_test
        if test and test not in row["harness"]["tests"]:
            row["harness"]["tests"].append(test)
        _status(row, fields)
        self.append(row)
        return row

    def append(self, row: dict) -> None:
        if self.path is None:
            return
        from ..core.artifacts import append_jsonl

        append_jsonl(self.path, [row])
        self.appended += 1


def _status(row: dict, fields: dict) -> None:
    """ok / parity_failed from the parity check; run_failed or conversion_failed as reported; a
    record with a benchmark and no parity check is "measured"."""
    if fields.get("status") in ("run_failed", "conversion_failed"):
        return
    parity = row.get("parity")
    if parity is not None:
        row["status"] = "ok" if parity.get("passed") else "parity_failed"
        if parity.get("passed"):
            row.pop("reason", None)
        else:
            row["reason"] = "; ".join(parity.get("failures") or ())
    elif row.get("bench") is not None:
        row["status"] = "measured"
        row.pop("reason", None)
