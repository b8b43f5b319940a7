"""edgekit runner: load one artifact with its runtime, run inputs, time it.

This file depends on the Python standard library, numpy and the runtime only, because it is
copied as-is to remote devices. It runs as a worker process that answers one JSON request per
line on stdin with one JSON response per line on stdout (``python runner.py serve``); arrays
travel as ``.npz`` files beside it. The runtime is imported once per worker, not per request.

Requests: {"op": "load", "artifact", "runtime", "threads"} | {"op": "infer", "inputs", "outputs"}
| {"op": "bench", "inputs", "warmup", "min_runs", "min_seconds", "max_seconds"} | {"op": "env"}
| {"op": "quit"}.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

PROTOCOL = 1


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory figure in KB (``VmRSS``, ``VmHWM``), or None off Linux."""
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

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except Exception:  # pragma: no cover - non-POSIX
        return 0


class Model:
    """A loaded artifact. Subclasses know one runtime; none knows transport."""

    runtime = ""
    batch_limit = None  # fixed batch size of the model's inputs, or None if dynamic

    def input_specs(self) -> list:
        raise NotImplementedError

    def output_names(self) -> list:
        raise NotImplementedError

    def prepare(self, feed: dict) -> dict:
        """Cast/quantize a float/int feed to what the model takes (outside the timed path)."""
        return feed

    def run(self, feed: dict) -> dict:
        raise NotImplementedError


class OnnxRuntimeModel(Model):
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        self.version = ort.__version__
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        dims = [i.shape[0] if i.shape else None for i in self.inputs]
        self.batch_limit = dims[0] if dims and isinstance(dims[0], int) else None

    def input_specs(self):
        types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
                 "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
        return [{"name": i.name, "shape": [d if isinstance(d, int) else None for d in i.shape],
                 "dtype": types.get(i.type, i.type)} for i in self.inputs]

    def output_names(self):
        return list(self.outputs)

    def prepare(self, feed):
        out = {}
        for spec in self.input_specs():
            a = lookup_input(feed, spec["name"])
            out[spec["name"]] = np.ascontiguousarray(a.astype(spec["dtype"], copy=False))
        return out

    def run(self, feed):
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))


class LiteRtModel(Model):
    runtime = "litert"

    def __init__(self, path: str, threads: int):
        try:
            from ai_edge_litert import interpreter as tfl
            import ai_edge_litert

            self.version = getattr(ai_edge_litert, "__version__", "")
        except ImportError:  # older boards
            from tflite_runtime import interpreter as tfl

            self.version = "tflite_runtime"
        self.interpreter = tfl.Interpreter(model_path=path, num_threads=threads)
        sigs = self.interpreter.get_signature_list()
        if sigs:  # names as the converter kept them (the ONNX/torch input names)
            runner = self.interpreter.get_signature_runner(next(iter(sigs)))
            self.in_details = runner.get_input_details()
            self.out_details = runner.get_output_details()
            del runner  # it holds references that would block allocate_tensors
        else:
            self.in_details = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.out_details = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.interpreter.allocate_tensors()
        self.shapes = {n: tuple(d["shape"]) for n, d in self.in_details.items()}
        first = next(iter(self.in_details.values()))
        sig = first.get("shape_signature", first["shape"])
        self.batch_limit = int(sig[0]) if len(sig) and int(sig[0]) > 0 else None

    def input_specs(self):
        return [{"name": n, "shape": [int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"])],
                 "dtype": np.dtype(d["dtype"]).name} for n, d in self.in_details.items()]

    def output_names(self):
        return list(self.out_details)

    def prepare(self, feed):
        out = {}
        for name, d in self.in_details.items():
            a = lookup_input(feed, name)
            dtype = np.dtype(d["dtype"])
            scale, zero = d.get("quantization", (0.0, 0))
            if dtype.kind in "iu" and a.dtype.kind == "f" and scale:
                info = np.iinfo(dtype)
                a = np.clip(np.round(a / scale + zero), info.min, info.max)
            out[name] = np.ascontiguousarray(a.astype(dtype, copy=False))
        return out

    def run(self, feed):
        # the interpreter's tensor API directly: the leanest call path on the timed loop
        interp = self.interpreter
        for name, d in self.in_details.items():
            a = feed[name]
            if a.shape != self.shapes[name]:
                interp.resize_tensor_input(d["index"], a.shape)
                interp.allocate_tensors()
                self.shapes[name] = a.shape
            interp.set_tensor(d["index"], a)
        interp.invoke()
        raw = {n: interp.get_tensor(d["index"]) for n, d in self.out_details.items()}
        out = {}
        for name, a in raw.items():
            scale, zero = self.out_details[name].get("quantization", (0.0, 0))
            out[name] = (a.astype(np.float32) - zero) * scale if a.dtype.kind in "iu" and scale else a
        return out


RUNTIMES = {"onnxruntime": OnnxRuntimeModel, "litert": LiteRtModel}


def lookup_input(feed: dict, name: str):
    """The data array for model input ``name``: exact, then the converter-decorated name's core
    (``serving_default_x:0`` -> ``x``), then a unique prefix match, then the only array there is."""
    if name in feed:
        return feed[name]
    core = name.split(":")[0].replace("serving_default_", "")
    if core in feed:
        return feed[core]
    close = [k for k in feed if core.startswith(k) or k.startswith(core)]
    if len(close) == 1:
        return feed[close[0]]
    if len(feed) == 1:
        return next(iter(feed.values()))
    raise KeyError(f"the model's input '{name}' is not in the data (which has {sorted(feed)})")


def run_all(model: Model, arrays: dict) -> dict:
    """Run every sample of ``arrays`` through ``model`` in batches it accepts."""
    n = len(next(iter(arrays.values())))
    step = model.batch_limit or min(n, 64)
    pieces = []
    for start in range(0, n, step):
        feed = model.prepare({k: v[start:start + step] for k, v in arrays.items()})
        pieces.append(model.run(feed))
    return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}


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


def environment(runtime_versions: dict | None = None) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"os": platform.system(), "release": platform.release(), "arch": platform.machine(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "mem_total_kb": mem_kb, "python": platform.python_version(),
            "numpy": np.__version__, "runtimes": dict(runtime_versions or {})}


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
            cls = RUNTIMES[req["runtime"]]
            model = cls(req["artifact"], int(req.get("threads", 1)))
            self.model = model
            return {"load_s": time.perf_counter() - t0, "inputs": model.input_specs(),
                    "outputs": model.output_names(), "runtime_version": model.version,
                    "batch_limit": model.batch_limit, "rss_after_load_kb": _rss_kb()}
        if op == "infer":
            with np.load(req["inputs"]) as z:
                arrays = {k: z[k] for k in z.files}
            t0 = time.perf_counter()
            outputs = run_all(self._model(), arrays)
            _save_npz(req["outputs"], outputs)
            return {"seconds": time.perf_counter() - t0, "outputs": list(outputs)}
        if op == "bench":
            with np.load(req["inputs"]) as z:
                arrays = {k: z[k] for k in z.files}
            model = self._model()
            batch = model.batch_limit or int(req.get("batch", 1))
            feed = model.prepare({k: v[:batch] for k, v in arrays.items()})
            result = time_calls(lambda: model.run(feed), int(req.get("warmup", 10)), int(req.get("min_runs", 50)),
                                float(req.get("min_seconds", 1.0)), float(req.get("max_seconds", 60.0)))
            result.update(batch=batch, peak_rss_kb=_rss_kb(), rss_start_kb=self.rss_start_kb)
            return result
        if op == "env":
            versions = {}
            for name, mod in (("onnxruntime", "onnxruntime"), ("litert", "ai_edge_litert")):
                try:
                    m = __import__(mod)
                    versions[name] = getattr(m, "__version__", "?")
                except Exception:
                    pass
            return environment(versions)
        raise ValueError(f"unknown op {op!r}")

    def _model(self) -> Model:
        if self.model is None:
            raise RuntimeError("no model loaded")
        return self.model


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
