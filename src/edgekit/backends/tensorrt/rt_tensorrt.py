"""The TensorRT side of the runner (shipped to NVIDIA devices; numpy + TensorRT's Python runtime, with
cuda-python or torch.cuda for the GPU buffers).

Loads an engine folder (``model.engine`` + ``engine.json``, built on this device) and runs it with
``execute_async_v3`` on one CUDA stream: the inputs are copied to the GPU, the engine runs, the outputs
come back, all inside the timed call (as an app sees it). Its own timer is ``trtexec --loadEngine`` on
the same engine when trtexec is on the device: its performance summary (throughput, latency, enqueue,
H2D, GPU compute and D2H statistics) is recorded beside edgekit's figures.
"""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np

try:
    from runtime_base import Model, fixed_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, fixed_input
try:
    from trtexec_log import parse, timer_record
    from trt_device import probe
except ImportError:
    from edgekit.backends.tensorrt.trtexec_log import parse, timer_record
    from edgekit.backends.tensorrt.trt_device import probe

ENGINE_FILE = "engine.json"


def runtime_version() -> str:
    """For the worker's environment probe: TensorRT, and the GPU and CUDA it runs on."""
    import tensorrt as trt

    facts = probe()
    where = ", ".join(x for x in (facts.get("gpu"), facts.get("cuda") and f"CUDA {facts['cuda']}") if x)
    return trt.__version__ + (f" ({where})" if where else "")


class _TorchCuda:
    """GPU buffers and a stream through torch.cuda."""

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = self.stream.cuda_stream

    def alloc(self, shape, dtype):
        t = self.torch.empty(tuple(shape), dtype=getattr(self.torch, np.dtype(dtype).name), device="cuda")
        return t, t.data_ptr()

    def upload(self, buf, array):
        buf.copy_(self.torch.from_numpy(array), non_blocking=False)

    def download(self, buf):
        return buf.cpu().numpy()

    def sync(self):
        self.stream.synchronize()


class _CudaPython:
    """GPU buffers and a stream through cuda-python's runtime bindings."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self.handle = self._ok(cudart.cudaStreamCreate())

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if rest else None

    def alloc(self, shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = self._ok(self.rt.cudaMalloc(max(nbytes, 1)))
        return (int(ptr), tuple(shape), np.dtype(dtype)), int(ptr)

    def upload(self, buf, array):
        ptr = buf[0]
        a = np.ascontiguousarray(array)
        self._ok(self.rt.cudaMemcpyAsync(ptr, a.ctypes.data, a.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                         self.handle))

    def download(self, buf):
        ptr, shape, dtype = buf
        out = np.empty(shape, dtype)
        self._ok(self.rt.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))
        self.sync()
        return out

    def sync(self):
        self._ok(self.rt.cudaStreamSynchronize(self.handle))


def _gpu():
    errors = []
    for cls in (_CudaPython, _TorchCuda):
        try:
            return cls()
        except Exception as e:  # noqa: BLE001  the next binding may be there
            errors.append(f"{cls.__doc__.split(' through ')[-1].rstrip('.')}: {type(e).__name__}: {e}")
    raise ImportError("no CUDA binding for the GPU buffers (" + "; ".join(errors) + "); pip install cuda-python")


class TensorRTModel(Model):
    runtime = "tensorrt"

    def __init__(self, path: str, threads: int):
        import tensorrt as trt

        with open(os.path.join(path, ENGINE_FILE)) as f:
            self.meta = json.load(f)
        self.engine_path = os.path.join(path, self.meta.get("engine", "model.engine"))
        self.version = trt.__version__
        self.gpu = _gpu()
        logger = trt.Logger(trt.Logger.WARNING)
        with open(self.engine_path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (built for another GPU or TensorRT "
                               f"version? it was built on {self.meta.get('built_on')})")
        self.context = self.engine.create_execution_context()
        self.inputs = [dict(i) for i in self.meta["inputs"]]
        for spec in self.inputs:
            if spec.get("dynamic"):
                self.context.set_input_shape(spec["name"], tuple(spec["shape"]))
        self.buffers, self.outputs = {}, []
        for k in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(k)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(self.context.get_tensor_shape(name))
            buf, ptr = self.gpu.alloc(shape, dtype)
            self.buffers[name] = (buf, dtype, shape)
            self.context.set_tensor_address(name, ptr)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)
        self.output_order = [o for o in self.meta.get("outputs", []) if o in self.outputs] or self.outputs
        first = self.inputs[0]["shape"] if self.inputs else []
        self.batch_limit = int(first[0]) if first else None

    def input_specs(self):
        return [{k: s[k] for k in ("name", "shape", "dtype")} for s in self.inputs]

    def output_names(self):
        return list(self.output_order)

    def prepare(self, feed):
        out = {}
        for spec in self.inputs:
            dtype = self.buffers[spec["name"]][1]
            out[spec["name"]] = fixed_input(feed, dict(spec, dtype=dtype.name), "the engine is built")
        return out

    def run(self, feed):
        for name, array in feed.items():
            self.gpu.upload(self.buffers[name][0], array)
        if not self.context.execute_async_v3(self.gpu.handle):
            raise RuntimeError("TensorRT's execute_async_v3 failed")
        self.gpu.sync()
        return {name: self.gpu.download(self.buffers[name][0]) for name in self.output_order}

    def runtime_timer(self, feed, runs, seconds):
        """trtexec on the same engine (its own inputs, same shapes), about as long as edgekit's loop."""
        trtexec = probe().get("trtexec")
        if not trtexec:
            return None
        argv = [trtexec, f"--loadEngine={self.engine_path}", f"--iterations={max(int(runs), 10)}",
                f"--duration={max(1, int(round(seconds)))}", "--warmUp=200"]
        dynamic = [s for s in self.inputs if s.get("dynamic")]
        if dynamic:
            argv.append("--shapes=" + ",".join(f"{s['name']}:{'x'.join(map(str, s['shape']))}" for s in dynamic))
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=max(120.0, 4 * seconds + 60))
        except (OSError, subprocess.SubprocessError):
            return None
        record = timer_record(parse(p.stdout + "\n" + p.stderr))
        if record is not None:
            record["command"] = " ".join([os.path.basename(trtexec)] + argv[1:])
        return record


MODEL = TensorRTModel
