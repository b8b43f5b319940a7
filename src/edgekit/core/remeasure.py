"""Re-measuring a baseline artifact and the current one side by side: ``edgekit check --remeasure``.

Two runs taken at different times see different machine load, and the 95% CIs of their medians,
each computed within one run, say nothing about that. Here both artifacts are loaded at once on
the same device, each in its own runner worker, and timed in short alternating rounds (A B, B A,
A B, ...): load that comes and goes hits both alike. The verdict reads the per-round ratio
current/baseline: the median ratio, and a distribution-free 95% CI of it over the rounds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..reports.fmt import key_text
from .stats import latency_stats, median_ci


@dataclass(frozen=True)
class Rounds:
    """How long to time: ``rounds`` rounds per artifact, each at least ``min_runs`` runs and
    ``min_seconds`` after ``warmup`` untimed runs."""
    rounds: int = 10
    warmup: int = 5
    min_runs: int = 30
    min_seconds: float = 0.2
    max_seconds: float = 10.0


@dataclass
class Remeasured:
    key: tuple
    device: str
    rounds: int
    base: dict  # latency stats of all the baseline's rounds pooled
    current: dict
    ratios: list[float] = field(default_factory=list)  # current / baseline median, per round

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios))

    @property
    def ratio_ci(self) -> tuple[float, float]:
        return median_ci(np.sort(np.asarray(self.ratios)))


def why_not(base, cur) -> str | None:
    """Why the pair cannot be re-measured (None when it can)."""
    for r, what in ((base, "baseline"), (cur, "current")):
        if not r.artifact or not r.runtime:
            return f"the {what} record names no artifact or runtime"
        if not Path(r.artifact).exists():
            return f"the {what} artifact {r.artifact} is gone"
    if Path(base.artifact).resolve() == Path(cur.artifact).resolve() and base.artifact_sha256 != cur.artifact_sha256:
        return f"the baseline artifact was overwritten by the current one at {cur.artifact}"
    return None


def _inputs(loaded: dict):
    from .data import random_dataset
    from .signature import TensorSpec

    specs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in loaded["inputs"]]
    data = random_dataset(specs, n_calib=1, n_eval=1).check_against(specs)
    return data.bench_sample(), data.stacked


def remeasure_on(device, pairs: list[tuple], rounds: Rounds = Rounds(), progress=None) -> dict:
    """Each (key, baseline Record, current Record) timed interleaved on the open ``device``;
    returns {key: Remeasured}."""
    from .session import RunnerSession

    progress = progress or (lambda msg: None)
    out = {}
    for key, base, cur in pairs:
        threads = int((base.bench.threads if base.bench else None) or 1)
        runtimes = sorted({base.runtime, cur.runtime})
        with RunnerSession(device, runtimes=runtimes) as sa, RunnerSession(device, runtimes=runtimes) as sb:
            la = sa.load(Path(base.artifact), base.runtime, threads=threads)
            lb = sb.load(Path(cur.artifact), cur.runtime, threads=threads)
            feed_a = _inputs(la)
            feed_b = feed_a if la["inputs"] == lb["inputs"] else _inputs(lb)
            times = {"a": [], "b": []}
            ratios = []
            progress(f"{key_text(key)}: baseline and current artifact, {rounds.rounds} alternating rounds each "
                     f"on {device.name}")
            for k in range(rounds.rounds):
                medians = {}
                for side in (("a", "b") if k % 2 == 0 else ("b", "a")):  # A B, B A, ...: neither always first
                    session, (sample, stacked) = (sa, feed_a) if side == "a" else (sb, feed_b)
                    raw = session.bench(sample, stacked, warmup=rounds.warmup, min_runs=rounds.min_runs,
                                        min_seconds=rounds.min_seconds, max_seconds=rounds.max_seconds)
                    times[side] += raw["times_s"]
                    medians[side] = float(np.median(raw["times_s"]))
                ratios.append(medians["b"] / medians["a"])
        out[key] = Remeasured(key, device.name, rounds.rounds, latency_stats(times["a"]), latency_stats(times["b"]),
                              ratios)
    return out


def remeasure(pairs: list[tuple], rounds: Rounds = Rounds(), progress=None, device_wait: float = 0.0) -> dict:
    """Re-measure (key, baseline, current) pairs on the device each was measured on (devices.toml
    names; one lease per device). Returns {key: Remeasured}."""
    from ..devices.inventory import using

    by_device: dict[str, list] = {}
    for key, b, c in pairs:
        by_device.setdefault(key[2] or "local", []).append((key, b, c))
    out = {}
    for name, todo in by_device.items():
        with using(name, device_wait) as device:
            out.update(remeasure_on(device, todo, rounds, progress))
    return out
