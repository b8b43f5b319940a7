"""Latency statistics from raw timings: percentiles, spread, a 95% CI of the median, a noise flag.

A series is *noisy* when its median cannot be read as "the" latency of the artifact on that
machine. Each rule says why in ``noisy_why`` (the reports print it):

- the 95% CI of the median is wider than 10% of the median (too few or too scattered runs);
- the tail: p90 is more than twice p50 (the machine kept interrupting the runs);
- the spread: the central 80% of the runs (p10…p90) spans more than 80% of the median;
- the fast runs: a tenth of the runs are more than 30% faster than the median. Latency has a
  floor (the artifact cannot run faster than the hardware), so in a steady series the fastest
  runs sit just under the median; fast runs far below it mean the median was slowed by something
  for much of the series: two modes (contention, CPU frequency) or a drift;
- the drift: the median of the first quarter of the runs (in the order they ran) and that of the
  last quarter differ by more than 20% of the median.

A single outlier trips none of them: every rule reads percentiles or quarter medians.
"""
from __future__ import annotations

import math

import numpy as np

from ..reports.fmt import ms_text

NOISY_CI_FRACTION = 0.10  # CI of the median wider than 10% of it
NOISY_TAIL_RATIO = 2.0  # p90 more than twice p50
NOISY_SPREAD = 0.80  # p90 - p10 more than 80% of p50
NOISY_FAST_RATIO = 0.70  # p10 below 70% of p50: the fastest tenth far below the median
NOISY_DRIFT = 0.20  # first- and last-quarter medians more than 20% of p50 apart
MIN_RUNS_FOR_SHAPE = 8  # fewer runs: only the CI and the tail rules apply


def median_ci(sorted_ms: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (binomial, normal approximation)."""
    n = len(sorted_ms)
    if n < 3:
        return float(sorted_ms[0]), float(sorted_ms[-1])
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return float(sorted_ms[lo]), float(sorted_ms[hi])


def quantile_ci(sorted_ms: np.ndarray, q: float, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free CI of the ``q`` quantile (0.9 for p90) from order statistics: the ranks
    ``n q -/+ z sqrt(n q (1 - q))`` (binomial, normal approximation); for q = 0.5, :func:`median_ci`."""
    n = len(sorted_ms)
    if n < 3:
        return float(sorted_ms[0]), float(sorted_ms[-1])
    half = z * math.sqrt(n * q * (1.0 - q))
    lo = max(0, int(math.floor(n * q - half)))
    hi = min(n - 1, int(math.ceil(n * q + half)))
    return float(sorted_ms[lo]), float(sorted_ms[hi])


def noise_reasons(ms_in_order) -> list[str]:
    """Why a series of timings (ms, in the order they ran) is noisy; empty when it is steady."""
    ms = np.asarray(ms_in_order, dtype=np.float64)
    if len(ms) == 0:
        return []
    s = np.sort(ms)
    p10, p50, p90 = (float(np.percentile(s, q)) for q in (10, 50, 90))
    if p50 <= 0:
        return []
    why = []
    lo, hi = median_ci(s)
    if (hi - lo) / p50 > NOISY_CI_FRACTION:
        why.append(f"95% CI of the median spans {100 * (hi - lo) / p50:.0f}% of it")
    if p90 / p50 > NOISY_TAIL_RATIO:
        why.append(f"p90 is {p90 / p50:.1f}x p50")
    if len(ms) >= MIN_RUNS_FOR_SHAPE:
        if (p90 - p10) / p50 > NOISY_SPREAD:
            why.append(f"the central 80% of runs spans {100 * (p90 - p10) / p50:.0f}% of the median")
        if p10 < NOISY_FAST_RATIO * p50:
            why.append(f"a tenth of the runs are {100 * (1 - p10 / p50):.0f}%+ faster than the median "
                       f"(min {ms_text(s[0])} ms vs p50 {ms_text(p50)} ms): two modes or a drift")
        q = len(ms) // 4
        first, last = float(np.median(ms[:q])), float(np.median(ms[-q:]))
        if abs(last - first) / p50 > NOISY_DRIFT:
            why.append(f"drift: the first quarter's median {ms_text(first)} ms, the last quarter's {ms_text(last)} ms")
    return why


def latency_stats(times_s: list[float]) -> dict:
    raw = np.asarray(times_s, dtype=np.float64) * 1000.0
    ms = np.sort(raw)
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    lo, hi = median_ci(ms)
    why = noise_reasons(raw)
    return {"n": int(len(ms)), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, "min_ms": float(ms[0]),
            "max_ms": float(ms[-1]), "median_ci95_ms": [lo, hi], "noisy": bool(why), "noisy_why": why}
