"""``edgekit fit``: the best artifact for a device under budgets, and why the others lost.

Every candidate target (and recipe variant) is converted, checked for parity and measured on
the device with the main pipeline; the winner is the fastest artifact that meets every budget
(ties: the smaller one). When none does, the answer names the budget that cannot be met and how
close the best candidate came on it. With ``--fallback`` a second artifact is chosen too: the
fastest one on a different runtime than the winner's that also meets every budget (what an app
loads when the primary's runtime fails on a device).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..reports import Record
from ..reports.fmt import cosine_text, ms_text


@dataclass(frozen=True)
class Budget:
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None  # points of the task metric; cosine-only tasks use min_cosine
    min_cosine: float | None = None


@dataclass
class Candidate:
    record: Record
    broken: list[str] = field(default_factory=list)  # budgets broken, with by how much

    @property
    def name(self) -> str:
        return self.record.target or "?"

    @property
    def latency(self) -> float | None:
        return self.record.p50_ms


def _metrics(r: Record) -> dict:
    return {"latency_ms": r.p50_ms, "size_mb": r.size_mb or None,
            "accuracy_drop": -r.task_delta if r.task_delta is not None else None, "cosine": r.worst_cosine}


def _measured(r: Record) -> bool:
    """Converted and measured (parity passed or not): its figures count."""
    return r.status in ("ok", "parity_failed")


def judge(records: Iterable[Record | dict], budget: Budget) -> tuple[Candidate | None, list[Candidate], dict]:
    """Pick the winner among measured records; return (winner, all candidates, closest per budget)."""
    cands = []
    for r in records:
        r = Record.coerce(r)
        if r.target == "source":
            continue
        c = Candidate(r)
        if not _measured(r):
            c.broken.append(f"{r.status_text if r.status else 'failed'}: {(r.reason or '')[:90]}")
            cands.append(c)
            continue
        m = _metrics(r)
        if budget.max_latency_ms is not None and (m["latency_ms"] is None or m["latency_ms"] > budget.max_latency_ms):
            c.broken.append("no latency measured" if m["latency_ms"] is None
                            else f"p50 latency {ms_text(m['latency_ms'])} ms > {budget.max_latency_ms:g} ms")
        if budget.max_size_mb is not None and m["size_mb"] is not None and m["size_mb"] > budget.max_size_mb:
            c.broken.append(f"size {m['size_mb']:.2f} MB > {budget.max_size_mb:g} MB")
        if budget.max_accuracy_drop is not None:
            if m["accuracy_drop"] is not None and m["accuracy_drop"] > budget.max_accuracy_drop:
                c.broken.append(f"accuracy drop {m['accuracy_drop']:.2f} points > {budget.max_accuracy_drop:g} points")
        min_cos = budget.min_cosine
        if min_cos is None and budget.max_accuracy_drop is not None and m["accuracy_drop"] is None:
            min_cos = 0.98  # no labels (embeddings): the accuracy budget becomes a cosine floor
        if min_cos is not None and m["cosine"] is not None and m["cosine"] < min_cos:
            c.broken.append(f"worst cosine {cosine_text(m['cosine'])} < {min_cos:g}")
        cands.append(c)
    ok = [c for c in cands if not c.broken]
    ok.sort(key=lambda c: (c.latency, c.record.size or 0))
    measured = [_metrics(c.record) for c in cands if _measured(c.record)]
    closest = {}
    for key, better in (("latency_ms", min), ("size_mb", min), ("accuracy_drop", min), ("cosine", max)):
        vals = [m[key] for m in measured if m[key] is not None]
        if vals:
            closest[key] = better(vals)
    return (ok[0] if ok else None), cands, closest


def pick_fallback(winner: Candidate | None, cands: list[Candidate]) -> Candidate | None:
    """The fastest candidate meeting every budget on a runtime other than the winner's (ties: the smaller)."""
    if winner is None:
        return None
    ok = [c for c in cands if not c.broken and c is not winner and c.record.runtime != winner.record.runtime]
    ok.sort(key=lambda c: (c.latency, c.record.size or 0))
    return ok[0] if ok else None


def explain(winner: Candidate | None, cands: list[Candidate], closest: dict, budget: Budget, device: str,
            fallback: Candidate | None = None, fallback_wanted: bool = False) -> str:
    lines = []
    if winner:
        m = _metrics(winner.record)
        acc = f", accuracy drop {max(0.0, m['accuracy_drop']):.2f} points" if m["accuracy_drop"] is not None else \
            (f", worst cosine {cosine_text(m['cosine'])}" if m["cosine"] is not None else "")
        size = f"{m['size_mb']:.2f} MB" if m["size_mb"] is not None else "size unknown"
        lines.append(f"BEST on {device}: {winner.name}  (p50 {ms_text(m['latency_ms'])} ms, {size}{acc})")
        lines.append(f"  artifact: {winner.record.artifact}")
        if fallback is not None:
            m = _metrics(fallback.record)
            lines.append(f"FALLBACK on {device}: {fallback.name}  (p50 {ms_text(m['latency_ms'])} ms, runtime "
                         f"{fallback.record.runtime} instead of {winner.record.runtime})")
            lines.append(f"  artifact: {fallback.record.artifact}")
        elif fallback_wanted:
            lines.append(f"NO fallback: no artifact on a runtime other than {winner.record.runtime} meets every "
                         "budget (the table says why each lost).")
    else:
        lines.append(f"NO target meets every budget on {device}.")
        for what, limit, key, fmt, unit in (
                ("latency", budget.max_latency_ms, "latency_ms", lambda v: f"p50 {ms_text(v)}", "ms"),
                ("size", budget.max_size_mb, "size_mb", lambda v: f"{v:.2f}", "MB"),
                ("accuracy drop", budget.max_accuracy_drop, "accuracy_drop", lambda v: f"{v:.2f}", "points")):
            if limit is None or key not in closest:
                continue
            if closest[key] > limit:
                lines.append(f"  the {what} budget ({limit:g} {unit}) cannot be met: the best of all candidates is "
                             f"{fmt(closest[key])} {unit}" + (f" ({closest[key] / limit:.2f}x the budget)" if limit > 0
                                                               else ""))
        if budget.min_cosine is not None and "cosine" in closest and closest["cosine"] < budget.min_cosine:
            lines.append(f"  the worst-cosine floor ({budget.min_cosine:g}) cannot be met: the best of all candidates "
                         f"is {cosine_text(closest['cosine'])}")
        if not any("cannot be met" in ln for ln in lines[1:]):
            lines.append("  each budget alone is met by some target, but no target meets them all")
    lines.append("")
    lines.append(f"{'target':22s} {'p50 ms':>9s} {'size MB':>8s} {'Δ acc pts':>9s} {'worst cosine':>12s}  verdict")
    order = sorted(cands, key=lambda c: (c is not winner, c is not fallback, bool(c.broken),
                                         c.latency or float("inf")))
    for c in order:
        m = _metrics(c.record)
        f = (lambda v, spec: format(v, spec) if v is not None else "-")
        verdict = "BEST" if c is winner else "FALLBACK" if c is fallback else (
            "meets all budgets (slower)" if not c.broken else "; ".join(c.broken))
        lines.append(f"{c.name:22s} {ms_text(m['latency_ms']):>9s} {f(m['size_mb'], '8.2f'):>8s} "
                     f"{f(-m['accuracy_drop'] if m['accuracy_drop'] is not None else None, '+9.2f'):>9s} "
                     f"{cosine_text(m['cosine']):>12s}  {verdict}")
    return "\n".join(lines)
