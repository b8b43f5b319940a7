"""The words of the results tables, the same in the console, report.md and report.html: the column
headers, the legend under the table (what each column is measured against, on how many held-out
samples, what "noisy" and the ⚠ mark mean), and the sentence that says where the data came from.
"""
from __future__ import annotations

from dataclasses import replace

from .fmt import shorten
from .record import NOISY_MARK, Record

WORST_COSINE, MAX_ERR, P50, P90, SPEEDUP = "worst cosine", "max err", "p50 ms", "p90 ms", "speed-up"


def with_noisy_baselines(records: list[Record]) -> list[Record]:
    """The records, each speed-up that does not say whether it rests on a noisy timing (records
    written before edgekit said so) marked when its run's source row was noisy."""
    noisy_src = {(r.model, r.run_id) for r in records if r.is_source and r.noisy}
    return [replace(r, speedup_noisy=True) if r.speedup_noisy is None and not r.is_source and r.speedup is not None
            and (r.model, r.run_id) in noisy_src else r for r in records]


def task_header(records: list[Record]) -> str:
    """"accuracy (Δ pts)": the task column named after its metric (one metric), else "task (Δ pts)"."""
    metrics = {r.task_metric for r in records if r.task_value is not None and r.task_metric}
    return f"{metrics.pop() if len(metrics) == 1 else 'task'} (Δ pts)"


def columns(records: list[Record]) -> list[str]:
    return ["target", "device", "status", "size", task_header(records), WORST_COSINE, MAX_ERR, P50, P90, SPEEDUP]


def eval_count(records: list[Record]) -> int | None:
    """The held-out samples parity ran on (the parity's n, else the data's evaluation count)."""
    for r in records:
        if r.parity and isinstance(r.parity.n, int):
            return r.parity.n
    for r in records:
        if r.data and isinstance(r.data.evaluation_samples, int):
            return r.data.evaluation_samples
    return None


def legend(records: list[Record]) -> tuple[str, list[tuple[str, str]]]:
    """The legend's first sentence and its (term, meaning) lines, for the records shown."""
    n = eval_count(records)
    names = sorted({r.data.name for r in records if r.data and r.data.name})
    on = f"the same {n} held-out samples" if n is not None else "the same held-out samples"
    head = (f"Every target is compared with the source model on {on}" + (f" of '{', '.join(names)}'" if names else "")
            + " (never used for calibration).")
    items = []
    if any(r.task_value is not None for r in records):
        items.append((task_header(records), "the task metric against the labels; in brackets its change against the "
                                            "source's, in percentage points"))
    items += [(WORST_COSINE, "mean per-sample cosine of target vs source outputs, on the output that differs most; "
                             "1 = identical"),
              (MAX_ERR, "largest |target - source| on that output, as a % of the source output's largest |value|"),
              ("p50 / p90 ms", "median / 90th-percentile time of one inference on the row's device"),
              (SPEEDUP, "source p50 / target p50, both timed on the same machine"),
              (f"(noisy), {NOISY_MARK}", f"unsteady timings (tail, spread, two modes or a drift): their p50 and the "
                                         f"speed-ups marked {NOISY_MARK} may be off; rerun on a quiet machine")]
    return head, items


def noisy_lines(records: list[Record]) -> list[str]:
    """One line per noisy timing: which row, and the first rule it broke."""
    out = []
    for r in records:
        if r.noisy:
            out.append(f"{r.name} on {r.device_label}: {shorten(r.noisy_why[0], 110)}")
    return out


def speedup_warning(records: list[Record]) -> str | None:
    """Said under a table where a speed-up rests on a noisy timing."""
    marked = [r.name for r in records if r.speedup_warn]
    if not marked:
        return None
    src = next((r for r in records if r.is_source), None)
    base = " (the source's own timing was noisy)" if src is not None and src.noisy else ""
    return (f"{NOISY_MARK} the speed-ups of {', '.join(marked)} rest on noisy timings{base}: rerun on a quiet machine "
            "before quoting them.")


def data_sentence(records: list[Record]) -> str | None:
    """Where the data came from, how calibration and evaluation samples were told apart, the check that
    they are disjoint, and how many calibration samples each target's recipe took (said once)."""
    first = next((r for r in records if r.data), None)
    if first is None:
        return None
    d = first.data
    parts = [f"Data '{d.name}': {d.evaluation_samples} held-out evaluation samples, "
             f"{d.calibration_samples} calibration samples available"]
    if d.split:
        parts.append(f"split: {d.split}")
    if d.shared_samples == 0:
        parts.append("checked disjoint: no evaluation sample is also a calibration sample")
    elif isinstance(d.shared_samples, int):
        parts.append(f"WARNING: {d.shared_samples} evaluation samples are also calibration samples (identical values)")
    used: dict[str, list[str]] = {}
    for r in records:
        if not r.is_source and r.data and r.data.calibration_used:
            used.setdefault(r.data.calibration_text, []).append(r.name)
    for text, names in used.items():
        parts.append(f"{', '.join(dict.fromkeys(names))}: {text}")
    notes = " ".join(d.notes or ())
    return "; ".join(parts) + "." + (f" {notes}" if notes else "")
