"""Latency statistics from raw timings: percentiles, spread, a 95% CI of the median, a noise flag."""
from __future__ import annotations

import math

import numpy as np

NOISY_CI_FRACTION = 0.10  # CI of the median wider than 10% of it
NOISY_TAIL_RATIO = 2.0  # p90 more than twice p50


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


def latency_stats(times_s: list[float]) -> dict:
    ms = np.sort(np.asarray(times_s, dtype=np.float64) * 1000.0)
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    lo, hi = median_ci(ms)
    noisy = bool(p50 > 0 and ((hi - lo) / p50 > NOISY_CI_FRACTION or p90 / p50 > NOISY_TAIL_RATIO))
    return {"n": int(len(ms)), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, "min_ms": float(ms[0]),
            "max_ms": float(ms[-1]), "median_ci95_ms": [lo, hi], "noisy": noisy}
