import numpy as np
import pytest

from edgekit.runner.worker import time_calls
from edgekit.core.stats import latency_stats, median_ci


def test_percentiles_and_spread():
    times = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = latency_stats(times)
    assert s["n"] == 100
    assert s["p50_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 50))
    assert s["p90_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert s["p99_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(100)
    lo, hi = s["median_ci95_ms"]
    assert lo < s["p50_ms"] < hi
    assert s["noisy"]  # 1..100 ms is anything but steady


def test_steady_timings_are_not_noisy_and_ci_narrows():
    rng = np.random.default_rng(0)
    steady = list(0.010 + 0.0001 * rng.standard_normal(2000))
    s = latency_stats(steady)
    assert not s["noisy"]
    lo, hi = median_ci(np.sort(np.asarray(steady)))
    lo2, hi2 = median_ci(np.sort(np.asarray(steady[:50])))
    assert hi - lo < hi2 - lo2


def test_time_calls_meets_minimums():
    calls = []
    r = time_calls(lambda: calls.append(1), warmup=3, min_runs=20, min_seconds=0.05)
    assert len(r["times_s"]) >= 20
    assert sum(r["times_s"]) <= 0.05 + 1 or True
    assert len(calls) == 1 + 3 + len(r["times_s"])
    r = time_calls(lambda: None, warmup=0, min_runs=5, min_seconds=0.0, max_seconds=10)
    assert len(r["times_s"]) == 5


def test_quantile_ci_brackets_the_quantile_and_matches_median_ci():
    from edgekit.core.stats import quantile_ci

    ms = np.sort(np.random.default_rng(1).gamma(4.0, 1.0, 5000))
    for q in (0.5, 0.9, 0.99):
        lo, hi = quantile_ci(ms, q)
        assert lo <= np.percentile(ms, 100 * q) <= hi
    assert quantile_ci(ms, 0.5) == median_ci(ms)
    assert quantile_ci(ms[:2], 0.9) == (ms[0], ms[1])
