"""trtexec's own figures, parsed from real trtexec output."""
from __future__ import annotations

import pytest

from edgekit.backends.tensorrt.trtexec_log import parse, strip, timer_record

# Real trtexec output (TensorRT 10.16, NVIDIA RTX 6000 Ada), lines kept verbatim from NVIDIA's own repository:
# NVIDIA/trt-samples-for-hackathon-cn, cookbook/07-Tool/trtexec/result-01.log (commit 02ed7b10, the log of
# `trtexec --onnx=.../model-trained.onnx`); the option listing and the per-10-runs trace are left out.
RESULT_01 = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v101600] [b72] # trtexec --onnx=/work/github/trt-samples-for-hackathon-cn-wili/cookbook/00-Data/model/model-trained.onnx
[07/02/2026-03:47:01] [I] Averages: 10 inferences
[07/02/2026-03:47:01] [I] Percentiles: 90,95,99
[07/02/2026-03:47:01] [I] === Device Information ===
[07/02/2026-03:47:01] [I] Available Devices:
[07/02/2026-03:47:01] [I]   Device 0: "NVIDIA RTX 6000 Ada Generation" UUID: GPU-6794f491-ac89-5cef-cdc5-a41123217fbd
[07/02/2026-03:47:01] [I] Selected Device: NVIDIA RTX 6000 Ada Generation
[07/02/2026-03:47:01] [I] Selected Device ID: 0
[07/02/2026-03:47:01] [I] Compute Capability: 8.9
[07/02/2026-03:47:01] [I] TensorRT version: 10.16.0
[07/02/2026-03:47:05] [I] [TRT] Engine generation completed in 2.74932 seconds.
[07/02/2026-03:47:05] [I] Created engine with size: 12.5703 MiB
[07/02/2026-03:47:05] [I] Engine built in 3.10201 sec.
[07/02/2026-03:47:05] [I] Starting inference
[07/02/2026-03:47:08] [I] Warmup completed 3349 queries over 200 ms
[07/02/2026-03:47:08] [I] Timing trace has 55177 queries over 3.00005 s
[07/02/2026-03:47:08] [I]
[07/02/2026-03:47:08] [I] === Trace details ===
[07/02/2026-03:47:08] [I] Trace averages of 10 runs:
[07/02/2026-03:47:08] [I] Average on 10 runs - GPU latency: 0.0324539 ms - Host latency: 0.040564 ms (enqueue 0.0283875 ms)
[07/02/2026-03:47:08] [I] Average on 10 runs - GPU latency: 0.0300293 ms - Host latency: 0.0416748 ms (enqueue 0.0297607 ms)
[07/02/2026-03:47:08] [I]
[07/02/2026-03:47:08] [I] === Performance summary ===
[07/02/2026-03:47:08] [I] Throughput: 18392 qps
[07/02/2026-03:47:08] [I] Latency: min = 0.0334473 ms, max = 0.882324 ms, mean = 0.0431899 ms, median = 0.0386963 ms, percentile(90%) = 0.0480957 ms, percentile(95%) = 0.0548096 ms, percentile(99%) = 0.144043 ms
[07/02/2026-03:47:08] [I] Enqueue Time: min = 0.0222168 ms, max = 0.714111 ms, mean = 0.0286857 ms, median = 0.0253906 ms, percentile(90%) = 0.034668 ms, percentile(95%) = 0.0402832 ms, percentile(99%) = 0.0578613 ms
[07/02/2026-03:47:08] [I] H2D Latency: min = 0.00268555 ms, max = 0.265503 ms, mean = 0.00441713 ms, median = 0.00390625 ms, percentile(90%) = 0.00524902 ms, percentile(95%) = 0.00610352 ms, percentile(99%) = 0.00952148 ms
[07/02/2026-03:47:08] [I] GPU Compute Time: min = 0.0266113 ms, max = 0.7229 ms, mean = 0.0334352 ms, median = 0.0297852 ms, percentile(90%) = 0.0378418 ms, percentile(95%) = 0.0429688 ms, percentile(99%) = 0.0952148 ms
[07/02/2026-03:47:08] [I] D2H Latency: min = 0.00317383 ms, max = 0.476074 ms, mean = 0.00533757 ms, median = 0.00512695 ms, percentile(90%) = 0.00646973 ms, percentile(95%) = 0.00720215 ms, percentile(99%) = 0.0129395 ms
[07/02/2026-03:47:08] [I] Total Host Walltime: 3.00005 s
[07/02/2026-03:47:08] [I] Total GPU Compute Time: 1.84486 s
[07/02/2026-03:47:08] [W] * Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized.
[07/02/2026-03:47:08] [W]   If not already in use, --useCudaGraph (utilize CUDA graphs where possible) may increase the throughput.
[07/02/2026-03:47:08] [W] * GPU compute time is unstable, with coefficient of variance = 62.0202%.
[07/02/2026-03:47:08] [W]   If not already in use, locking GPU clock frequency or adding --useSpinWait may improve the stability.
[07/02/2026-03:47:08] [I] Explanations of the performance metrics are printed in the verbose logs.
[07/02/2026-03:47:08] [I]
&&&& PASSED TensorRT.trtexec [TensorRT v101600] [b72] # trtexec --onnx=/work/github/trt-samples-for-hackathon-cn-wili/cookbook/00-Data/model/model-trained.onnx
"""


def test_performance_summary_of_a_real_trtexec_run():
    info = parse(RESULT_01)
    s = info["summary"]
    assert s["throughput_qps"] == 18392
    assert s["latency"] == pytest.approx({"min_ms": 0.0334473, "max_ms": 0.882324, "mean_ms": 0.0431899,
                                          "median_ms": 0.0386963, "p90_ms": 0.0480957, "p95_ms": 0.0548096,
                                          "p99_ms": 0.144043})
    assert s["enqueue"]["median_ms"] == pytest.approx(0.0253906)
    assert s["h2d"]["p99_ms"] == pytest.approx(0.00952148)
    assert s["gpu_compute"]["mean_ms"] == pytest.approx(0.0334352) and s["gpu_compute"]["max_ms"] == pytest.approx(0.7229)
    assert s["d2h"]["min_ms"] == pytest.approx(0.00317383)
    assert s["total_host_walltime_s"] == pytest.approx(3.00005) and s["total_gpu_compute_s"] == pytest.approx(1.84486)
    # the trace's per-10-run averages and the warnings after the block are not taken for summary lines
    assert set(s) == {"throughput_qps", "latency", "enqueue", "h2d", "gpu_compute", "d2h", "total_host_walltime_s",
                      "total_gpu_compute_s"}
    assert info["tensorrt"] == "10.16.0" and info["gpu"] == "NVIDIA RTX 6000 Ada Generation"
    assert info["build_s"] == pytest.approx(3.10201) and info["queries"] == 55177 and info["passed"] is True
    timer = timer_record(info)
    assert timer["name"] == "trtexec" and timer["p50_ms"] == pytest.approx(0.0386963) and timer["n"] == 55177
    assert timer["gpu_compute_p50_ms"] == pytest.approx(0.0297852)


def test_wrapped_prefixes_units_and_an_older_single_percentile():
    # constructed lines (not a real log): one unnamed percentile after a "Percentile: 99" option line, microsecond
    # and second units, and a wrapper's own "[INFO]" prefix before trtexec's
    log = "\n".join(["[INFO] [05/27/2023-12:05:31] [I] Percentile: 99",
                     "[INFO] [05/27/2023-12:05:31] [I] === Performance summary ===",
                     "[INFO] [05/27/2023-12:05:31] [I] Throughput: 120.699 qps",
                     "[INFO] [05/27/2023-12:05:31] [I] Latency: min = 9.11414 ms, max = 11.7442 ms, mean = 9.81005 ms, "
                     "median = 9.76404 ms, percentile = 11.4742 ms",
                     "[INFO] [05/27/2023-12:05:31] [I] GPU Compute Time: min = 754 us, max = 1.2 s, mean = 800 us, "
                     "median = 790 us, percentile(99%) = 900 us"])
    s = parse(log)["summary"]
    assert s["latency"]["p99_ms"] == pytest.approx(11.4742) and s["latency"]["median_ms"] == pytest.approx(9.76404)
    assert s["gpu_compute"]["min_ms"] == pytest.approx(0.754) and s["gpu_compute"]["max_ms"] == pytest.approx(1200)
    assert strip("[07/02/2026-03:47:08] [I] [TRT] Loaded engine size: 12 MiB") == "Loaded engine size: 12 MiB"


def test_a_build_only_log_has_no_summary():
    info = parse("\n".join(RESULT_01.splitlines()[:13]))
    assert "summary" not in info and timer_record(info) is None and info["build_s"] == pytest.approx(3.10201)
