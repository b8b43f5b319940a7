"""edgekit runner worker: load one artifact with its runtime, run inputs, time it.

The runner is a small folder shipped to the device: this file, ``runtime_base.py`` and the
runtime files (``rt_<runtime>.py``, from the backends) of the artifacts it will load. It depends on
the Python standard library, numpy and the runtimes only. It runs as a worker process that answers
one JSON request per line on stdin with one JSON response per line on stdout
(``python worker.py serve``); arrays travel as ``.npz`` files beside it. A runtime module is
imported once per worker, by name, when the first artifact of its runtime is loaded.

Requests: {"op": "load", "artifact", "runtime", "module", "threads"} | {"op": "infer", "inputs",
"outputs"} | {"op": "bench", "inputs", "warmup", "min_runs", "min_seconds", "max_seconds"}
| {"op": "env", "probe": {runtime: {"module", "runner"}}} | {"op": "quit"}.
A runtime that is not Python (a Node or browser harness) speaks the same protocol.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time

import numpy as np

try:
    from runtime_base import Model, run_all
except ImportError:  # imported as part of edgekit (the local reference, tests) rather than shipped
    from .runtime_base import Model, run_all

PROTOCOL = 2


SYSTEM = platform.system()  # "Linux", "Darwin" (macOS): /proc exists on Linux only


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory figure in KB (``VmRSS``, ``VmHWM``), or None off Linux."""
    if SYSTEM != "Linux":
        return None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int:
    """Reset this process's peak-RSS mark (Linux: ``5`` > clear_refs) so that each artifact loaded
    into a persistent worker gets its own peak; return the current RSS in KB."""
    if SYSTEM == "Linux":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    rss = _status_kb("VmRSS")
    return rss if rss is not None else _rss_kb()


def _rss_kb() -> int:
    """Peak resident memory of this process in KB. VmHWM belongs to the current program image;
    ru_maxrss would carry over the parent's peak across fork+exec."""
    peak = _status_kb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource

        return maxrss_kb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, SYSTEM)
    except Exception:  # pragma: no cover - non-POSIX
        return 0


def maxrss_kb(ru_maxrss: int, system: str) -> int:
    """``ru_maxrss`` in KB: macOS reports bytes, Linux and the BSDs kilobytes."""
    return int(ru_maxrss) // 1024 if system == "Darwin" else int(ru_maxrss)


def time_calls(fn, warmup: int = 10, min_runs: int = 50, min_seconds: float = 1.0,
               max_seconds: float = 60.0, max_runs: int = 100000) -> dict:
    """Time ``fn()``: first call, warm-up, then steady runs until both minimums are met."""
    clock = time.perf_counter
    t0 = clock()
    fn()
    first = clock() - t0
    for _ in range(warmup):
        fn()
    times = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        elapsed = t1 - start
        if (len(times) >= min_runs and elapsed >= min_seconds) or elapsed >= max_seconds or len(times) >= max_runs:
            break
    return {"first_s": first, "times_s": times, "warmup": warmup}


def _sysctl(name: str) -> str:
    """A macOS ``sysctl -n`` value ("" where there is none)."""
    import subprocess

    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _linux_facts() -> dict:
    cpu, mem_kb = "", 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "mem_total_kb": mem_kb}


def _darwin_facts() -> dict:
    """macOS has no /proc: the chip ("Apple M2 Pro") and memory from sysctl, the version from the platform."""
    mem = _sysctl("hw.memsize")
    return {"cpu": _sysctl("machdep.cpu.brand_string"), "mem_total_kb": int(mem) // 1024 if mem.isdigit() else 0,
            "os_version": platform.mac_ver()[0]}


def environment(runtime_versions: dict | None = None, system: str = "") -> dict:
    system = system or SYSTEM
    facts = _darwin_facts() if system == "Darwin" else _linux_facts() if system == "Linux" else {}
    facts["cpu"] = facts.get("cpu") or platform.processor() or ""
    return {"os": system, "release": platform.release(), "arch": platform.machine(), "cpu_count": os.cpu_count(),
            "mem_total_kb": 0, "python": platform.python_version(), "numpy": np.__version__,
            **facts, "runtimes": dict(runtime_versions or {})}


class Worker:
    def __init__(self):
        self.model = None
        self.rss_start_kb = _rss_kb()

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "load":
            self.model = None  # one artifact at a time: free the previous one first
            import gc

            gc.collect()
            self.rss_start_kb = _reset_peak_rss()
            t0 = time.perf_counter()
            cls = importlib.import_module(req["module"]).MODEL
            model = cls(req["artifact"], int(req.get("threads", 1)))
            self.model = model
            return {"load_s": time.perf_counter() - t0, "inputs": model.input_specs(),
                    "outputs": model.output_names(), "runtime_version": model.version,
                    "batch_limit": model.batch_limit, "rss_after_load_kb": _rss_kb()}
        if op == "infer":
            with np.load(req["inputs"]) as z:
                arrays = {k: z[k] for k in z.files}
            model = self._model()
            model.usage()  # forget what earlier requests chose
            t0 = time.perf_counter()
            outputs = run_all(model, arrays, tuple(req.get("stacked") or ()))
            _save_npz(req["outputs"], outputs)
            return _with_usage({"seconds": time.perf_counter() - t0, "outputs": list(outputs)}, model)
        if op == "bench":
            with np.load(req["inputs"]) as z:
                arrays = {k: z[k] for k in z.files}
            model = self._model()
            stacked = tuple(req.get("stacked") or ())
            model.usage()
            batch = 1 if stacked else (model.batch_limit or int(req.get("batch", 1)))
            feed = model.prepare({k: (v[0] if k in stacked else v[:batch]) for k, v in arrays.items()})
            result = time_calls(lambda: model.run(feed), int(req.get("warmup", 10)), int(req.get("min_runs", 50)),
                                float(req.get("min_seconds", 1.0)), float(req.get("max_seconds", 60.0)))
            result.update(batch=batch, peak_rss_kb=_rss_kb(), rss_start_kb=self.rss_start_kb)
            # the runtime's own timer (if it has one) on the same feed, about as long as the loop above
            own = model.runtime_timer(feed, len(result["times_s"]), sum(result["times_s"]))
            if own:
                result["runtime_timer"] = own
            return _with_usage(result, model)
        if op == "env":
            versions = {}
            for name, mod in (req.get("probe") or {}).items():
                module, runner = (mod, None) if isinstance(mod, str) else (mod["module"], mod.get("runner"))
                try:
                    # a runtime file may say its version itself (importing its runtime its own way)
                    own = getattr(importlib.import_module(runner), "runtime_version", None) if runner else None
                    versions[name] = own() if own else getattr(__import__(module), "__version__", "?")
                except Exception:
                    pass
            return environment(versions)
        raise ValueError(f"unknown op {op!r}")

    def _model(self) -> Model:
        if self.model is None:
            raise RuntimeError("no model loaded")
        return self.model


def _with_usage(resp: dict, model: Model) -> dict:
    """The response with what the runtime chose for its samples (shape buckets), when it chooses anything."""
    usage = model.usage()
    if usage:
        resp["usage"] = usage
    return resp


def _save_npz(path: str, arrays: dict) -> None:
    tmp = path + ".part.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def serve(stdin=None, stdout=None) -> int:
    # Runtimes may print to fd 1; keep the protocol on a private copy of it.
    if stdout is None:
        proto_fd = os.dup(1)
        os.dup2(2, 1)
        stdout = os.fdopen(proto_fd, "w", buffering=1)
    stdin = stdin or sys.stdin
    worker = Worker()
    stdout.write(json.dumps({"ready": True, "protocol": PROTOCOL, "pid": os.getpid()}) + "\n")
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            resp = {"ok": True, **worker.handle(req)}
        except Exception as e:  # reported to the host, which raises a typed error
            resp = {"ok": False, "error": f"{type(e).__name__}: {e}".strip()[:2000], "kind": type(e).__name__}
        stdout.write(json.dumps(resp) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve())
    print(__doc__)
