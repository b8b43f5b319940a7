"""The regression gate: compare current records with a baseline and say what got worse.

A latency regression needs both a ratio beyond the budget and non-overlapping 95% confidence
intervals of the median (so noise alone never fails a pipeline). Size growth and parity/task
metric drops are compared against their own budgets. Records are matched on
(model, target, device); the latest record of each wins.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..reports import Record, latest_records


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
        model, target, device = self.key
        return f"{model}/{target}@{device}: {self.what} {self.baseline} -> {self.current} ({self.change})"


@dataclass
class GateResult:
    regressions: list[Finding] = field(default_factory=list)
    improvements: list[Finding] = field(default_factory=list)
    compared: int = 0
    missing: list[tuple] = field(default_factory=list)  # in the baseline, not in current
    new: list[tuple] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.regressions


def compare(baseline: Iterable[Record | dict], current: Iterable[Record | dict],
            budgets: Budgets = Budgets()) -> GateResult:
    base = latest_records(baseline, include_source=False)
    cur = latest_records(current, include_source=False)
    res = GateResult(missing=sorted(set(base) - set(cur)), new=sorted(set(cur) - set(base)))
    for key in sorted(set(base) & set(cur)):
        b, c = base[key], cur[key]
        res.compared += 1
        if b.ok and not c.ok:
            res.regressions.append(Finding(key, "status", b.status_text, c.status_text, (c.reason or "")[:120]))
            continue
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
            res.regressions.append(Finding(key, "cosine", f"{bc:.5f}", f"{cc:.5f}", f"-{bc - cc:.5f}"))
    return res


def _latency(key, b: Record, c: Record, budgets, res):
    if not b.p50_ms or not c.p50_ms:
        return
    if b.emulated or c.emulated:
        return  # emulated timings say nothing of speed
    ratio = c.p50_ms / b.p50_ms
    (b_lo, b_hi), (c_lo, c_hi) = b.bench.ci95, c.bench.ci95
    if ratio > 1 + budgets.latency_rel and c_lo > b_hi:
        res.regressions.append(Finding(key, "p50 latency ms", round(b.p50_ms, 4), round(c.p50_ms, 4),
                                       f"+{100 * (ratio - 1):.1f}%, 95% CIs apart"))
    if ratio < 1 - budgets.latency_rel and c_hi < b_lo:
        res.improvements.append(Finding(key, "p50 latency ms", round(b.p50_ms, 4), round(c.p50_ms, 4),
                                        f"{100 * (ratio - 1):.1f}%"))


def format_result(res: GateResult) -> str:
    lines = []
    if res.regressions:
        lines.append(f"REGRESSED ({len(res.regressions)}):")
        lines += [f"  {f.line()}" for f in res.regressions]
    if res.improvements:
        lines.append("improved:")
        lines += [f"  {f.line()}" for f in res.improvements]
    for key in res.missing:
        lines.append(f"  note: {'/'.join(map(str, key))} is in the baseline but not measured now")
    lines.append(f"{'FAIL' if res.regressions else 'PASS'}: {res.compared} (model, target, device) compared, "
                 f"{len(res.regressions)} regression(s)")
    return "\n".join(lines)
