"""The regression gate: compare current records with a baseline and say what got worse.

Latency is compared one of two ways, and the output says which:

- across runs: a regression needs a ratio beyond the budget and non-overlapping 95% confidence
  intervals of the median. Those CIs are computed within each run: they cover the jitter of one
  run, not a change of machine load between the two runs;
- re-measured (``--remeasure``, :mod:`.remeasure`): both artifacts timed again in alternating
  rounds on the same device in the same run; a regression needs the median per-round ratio
  beyond the budget and its 95% CI above 1.

Size growth and parity/task metric drops are compared against their own budgets. Records are
matched on (model, target, device); the latest record of each wins.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..reports import Record, latest_records
from ..reports.fmt import cosine_text, key_text, ms_text

ACROSS_RUNS = ("latency compared across runs (95% CIs within each run: they do not cover a change of machine "
               "load between the runs; --remeasure times both artifacts again, interleaved, on their device)")


@dataclass(frozen=True)
class Budgets:
    latency_rel: float = 0.05  # p50 may grow 5% before it counts (and CIs must separate)
    size_rel: float = 0.01  # artifact size may grow 1%
    task_drop_points: float = 0.5  # task metric (accuracy) may fall 0.5 points
    cosine_drop: float = 0.001  # worst-output mean cosine may fall this much


@dataclass
class Finding:
    key: tuple
    what: str
    baseline: float | str | None
    current: float | str | None
    change: str

    def line(self) -> str:
        return f"{key_text(self.key)}: {self.what} {self.baseline} -> {self.current} ({self.change})"


@dataclass
class GateResult:
    regressions: list[Finding] = field(default_factory=list)
    improvements: list[Finding] = field(default_factory=list)
    compared: int = 0
    missing: list[tuple] = field(default_factory=list)  # in the baseline, not in current
    new: list[tuple] = field(default_factory=list)
    how: list[str] = field(default_factory=list)  # how latency was compared, one line per kind
    remeasured: list[str] = field(default_factory=list)  # a line per re-measured pair: what was seen

    @property
    def passed(self) -> bool:
        return not self.regressions


def pairs(baseline: Iterable[Record | dict], current: Iterable[Record | dict]) -> list[tuple]:
    """(key, baseline, current) for every measurement in both, latest record of each."""
    base = latest_records(baseline, include_source=False)
    cur = latest_records(current, include_source=False)
    return [(k, base[k], cur[k]) for k in sorted(set(base) & set(cur))]


def compare(baseline: Iterable[Record | dict], current: Iterable[Record | dict],
            budgets: Budgets = Budgets(), remeasured: dict | None = None) -> GateResult:
    """The gate. ``remeasured``: {key: :class:`~.remeasure.Remeasured`} for the pairs timed again
    side by side; their latency is judged on that, the others across runs."""
    base = latest_records(baseline, include_source=False)
    cur = latest_records(current, include_source=False)
    remeasured = remeasured or {}
    res = GateResult(missing=sorted(set(base) - set(cur)), new=sorted(set(cur) - set(base)))
    across = False
    for key in sorted(set(base) & set(cur)):
        b, c = base[key], cur[key]
        res.compared += 1
        if b.ok and not c.ok:
            res.regressions.append(Finding(key, "status", b.status_text, c.status_text, (c.reason or "")[:120]))
            continue
        if key in remeasured:
            _latency_remeasured(key, remeasured[key], budgets, res)
        elif b.p50_ms and c.p50_ms and not (b.emulated or c.emulated):
            across = True
            _latency(key, b, c, budgets, res)
        bs, cs = b.size, c.size
        if bs and cs and cs > bs * (1 + budgets.size_rel):
            res.regressions.append(Finding(key, "size bytes", bs, cs, f"+{100 * (cs / bs - 1):.1f}%"))
        bt, ct = b.task_value, c.task_value
        if bt is not None and ct is not None:
            drop = 100 * (bt - ct)
            if drop > budgets.task_drop_points:
                res.regressions.append(Finding(key, b.task_metric or "task metric", f"{100 * bt:.2f}%",
                                               f"{100 * ct:.2f}%", f"-{drop:.2f} points"))
        bc, cc = b.worst_cosine, c.worst_cosine
        if bc is not None and cc is not None and bc - cc > budgets.cosine_drop:
            res.regressions.append(Finding(key, "worst cosine", cosine_text(bc), cosine_text(cc),
                                           f"-{bc - cc:.6f}"))
    devices = sorted({m.device for m in remeasured.values()})
    if remeasured:
        n = max(m.rounds for m in remeasured.values())
        res.how.append(f"latency re-measured interleaved on {', '.join(devices)} ({n} alternating rounds per "
                       "artifact in this run; judged on the per-round ratio current/baseline and its 95% CI)")
    if across:
        res.how.append(ACROSS_RUNS)
    return res


def _latency(key, b: Record, c: Record, budgets, res):
    ratio = c.p50_ms / b.p50_ms
    (b_lo, b_hi), (c_lo, c_hi) = b.bench.ci95, c.bench.ci95
    if ratio > 1 + budgets.latency_rel and c_lo > b_hi:
        res.regressions.append(Finding(key, "p50 latency ms", ms_text(b.p50_ms), ms_text(c.p50_ms),
                                       f"+{100 * (ratio - 1):.1f}%, 95% CIs apart, across runs"))
    if ratio < 1 - budgets.latency_rel and c_hi < b_lo:
        res.improvements.append(Finding(key, "p50 latency ms", ms_text(b.p50_ms), ms_text(c.p50_ms),
                                        f"{100 * (ratio - 1):.1f}%, across runs"))


def _latency_remeasured(key, m, budgets, res):
    ratio, (lo, hi) = m.ratio, m.ratio_ci
    b, c = m.base["p50_ms"], m.current["p50_ms"]
    change = (f"{100 * (ratio - 1):+.1f}%, 95% CI {100 * (lo - 1):+.1f}%…{100 * (hi - 1):+.1f}%, "
              f"re-measured on {m.device}")
    res.remeasured.append(f"{key_text(key)}: p50 {ms_text(b)} -> {ms_text(c)} ms ({change})"
                          + (" [noisy timings]" if m.base["noisy"] or m.current["noisy"] else ""))
    if ratio > 1 + budgets.latency_rel and lo > 1:
        res.regressions.append(Finding(key, "p50 latency ms", ms_text(b), ms_text(c), change))
    if ratio < 1 - budgets.latency_rel and hi < 1:
        res.improvements.append(Finding(key, "p50 latency ms", ms_text(b), ms_text(c), change))


def format_result(res: GateResult) -> str:
    lines = [f"how: {h}" for h in res.how]
    if res.remeasured:
        lines.append("re-measured:")
        lines += [f"  {x}" for x in res.remeasured]
    if res.regressions:
        lines.append(f"REGRESSED ({len(res.regressions)}):")
        lines += [f"  {f.line()}" for f in res.regressions]
    if res.improvements:
        lines.append("improved:")
        lines += [f"  {f.line()}" for f in res.improvements]
    for key in res.missing:
        lines.append(f"  note: {key_text(key)} is in the baseline but not measured now")
    lines.append(f"{'FAIL' if res.regressions else 'PASS'}: {res.compared} (model, target, device) compared, "
                 f"{len(res.regressions)} regression(s)")
    return "\n".join(lines)
