"""trtexec's own figures, read from its log (standard library only: shipped to devices beside the
runner, and used here on the build's log).

trtexec ends a timed run with a block like (TensorRT 10)::

    [I] === Performance summary ===
    [I] Throughput: 18392 qps
    [I] Latency: min = 0.0334473 ms, max = 0.882324 ms, mean = 0.0431899 ms, median = 0.0386963 ms,
        percentile(90%) = 0.0480957 ms, percentile(95%) = 0.0548096 ms, percentile(99%) = 0.144043 ms
    [I] Enqueue Time: min = ... (same fields)
    [I] H2D Latency: ...    [I] GPU Compute Time: ...    [I] D2H Latency: ...
    [I] Total Host Walltime: 3.00005 s
    [I] Total GPU Compute Time: 1.84486 s

Every line may carry a prefix (``[07/02/2026-03:47:08] [I] ``, or a wrapper's ``[INFO] ...``).
``Latency`` is the host's view of one inference (H2D + GPU compute + D2H); ``GPU Compute Time`` is the
engine alone. Older releases print one ``percentile(99%)`` (TensorRT 8) or ``percentile: 99%``.
"""
from __future__ import annotations

import re

SUMMARY = "=== Performance summary ==="
# the metric lines of the summary, by the key edgekit records them under
METRICS = {"Latency": "latency", "Enqueue Time": "enqueue", "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute",
           "D2H Latency": "d2h", "Host Latency": "latency", "End-to-End Host Latency": "end_to_end"}
_PREFIX = re.compile(r"^(?:\s*\[[^\]]*\])*\s*")  # "[date] [I] " / "[INFO] [date] [I] " / "[TRT] "
_UNIT = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "ns": 1e-6, "s": 1e3, "sec": 1e3}
_FIELD = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)|percentile)\s*=\s*"
                    r"([-+0-9.eE]+)\s*(ms|us|µs|ns|sec|s)\b")


def strip(line: str) -> str:
    """A log line without trtexec's (or a wrapper's) bracketed prefixes."""
    return _PREFIX.sub("", line, count=1).strip()


def _stats(text: str, percentile_hint: str | None = None) -> dict:
    out = {}
    for m in _FIELD.finditer(text):
        name, pct, value, unit = m.groups()
        ms = float(value) * _UNIT[unit]
        if name.startswith("percentile"):
            pct = pct or percentile_hint or "99"
            name = "p" + pct.rstrip("0").rstrip(".") if "." in pct else "p" + pct
        out[f"{name}_ms"] = ms
    return out


def _seconds(text: str) -> float | None:
    m = re.match(r"([-+0-9.eE]+)\s*(ms|us|µs|ns|sec|s)\b", text.strip())
    return float(m.group(1)) * _UNIT[m.group(2)] / 1e3 if m else None


def parse(log: str) -> dict:
    """What trtexec's log says: ``summary`` (the performance summary: ``throughput_qps``, one stats
    table per metric in ms, ``total_host_walltime_s``, ``total_gpu_compute_s``) when the run timed
    inferences, and the facts around it (``tensorrt``, ``gpu``, ``build_s``, ``queries``, ``passed``)."""
    lines = [strip(x) for x in log.splitlines()]
    info: dict = {}
    summary: dict = {}
    in_summary = False
    pct_hint = None
    for line in lines:
        if line.startswith("&&&& PASSED"):
            info["passed"] = True
        elif line.startswith("&&&& FAILED"):
            info["passed"] = False
        elif line.startswith("TensorRT version:"):
            info["tensorrt"] = line.split(":", 1)[1].strip()
        elif line.startswith("Selected Device:"):
            info["gpu"] = line.split(":", 1)[1].strip()
        elif line.startswith("Compute Capability:"):
            info["compute_capability"] = line.split(":", 1)[1].strip()
        elif line.startswith("Percentiles:") or line.startswith("Percentile:"):
            pct_hint = line.split(":", 1)[1].strip().split(",")[-1].strip().rstrip("%") or None
        elif m := re.match(r"Engine built in ([-+0-9.eE]+) sec", line):
            info["build_s"] = float(m.group(1))
        elif m := re.match(r"Created engine with size: ([-+0-9.eE]+) MiB", line):
            info["engine_mib"] = float(m.group(1))
        elif m := re.match(r"Timing trace has (\d+) queries over ([-+0-9.eE]+) s", line):
            info["queries"], info["timed_s"] = int(m.group(1)), float(m.group(2))
        elif line == SUMMARY:
            in_summary, summary = True, {}
        elif in_summary:
            if not line or line.startswith("==="):
                if summary:
                    in_summary = False
                continue
            key, sep, rest = line.partition(":")
            if not sep:
                continue
            key = key.strip()
            if key == "Throughput":
                m = re.match(r"\s*([-+0-9.eE]+)\s*qps", rest)
                if m:
                    summary["throughput_qps"] = float(m.group(1))
            elif key in METRICS:
                stats = _stats(rest, pct_hint)
                if stats:
                    summary[METRICS[key]] = stats
            elif key == "Total Host Walltime":
                summary["total_host_walltime_s"] = _seconds(rest)
            elif key == "Total GPU Compute Time":
                summary["total_gpu_compute_s"] = _seconds(rest)
            elif key.startswith("Explanations"):
                in_summary = False
    if summary:
        info["summary"] = summary
    return info


def timer_record(info: dict) -> dict | None:
    """The runner's ``runtime_timer`` from a parsed timed run: trtexec's latency (host view) as the
    headline beside edgekit's own loop, the whole summary kept."""
    s = info.get("summary") or {}
    lat = s.get("latency")
    if not lat or "median_ms" not in lat:
        return None
    return {"name": "trtexec", "p50_ms": lat["median_ms"], "mean_ms": lat.get("mean_ms"), "min_ms": lat.get("min_ms"),
            "n": info.get("queries"), "gpu_compute_p50_ms": (s.get("gpu_compute") or {}).get("median_ms"),
            "throughput_qps": s.get("throughput_qps"), "summary": s}
