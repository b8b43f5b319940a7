"""The TVM side of the runner (shipped to devices; numpy + the TVM runtime only).

Loads a compiled module folder (``lib.so`` + ``tvm-module.json``) with the TVM runtime library
alone (``TVM_USE_RUNTIME_LIB=1``: no compiler) and runs it through the Relax VM. Its own timer is
TVM's ``time_evaluator`` on the same VM and inputs, reported beside edgekit's loop.

With ``EDGEKIT_TVM_RPC`` set (by a ``tvm-rpc`` device: {"host", "port"} or {"tracker", "key"}), the
module is uploaded to that TVM RPC server and runs there: inputs go to the server once per feed, each
run returns its outputs over the connection, and ``time_evaluator`` times it on the server itself.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import uuid

import numpy as np

try:
    from runtime_base import Model, fixed_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, fixed_input

MODULE_FILE = "tvm-module.json"


def import_tvm(threads: int):
    """The TVM runtime: its library only, and without torch (tvm_ffi imports it when it can:
    seconds and hundreds of MB a runner does not need)."""
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    if "tvm" in sys.modules:
        return sys.modules["tvm"]
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None
    try:
        import tvm
    finally:
        if hide and "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return tvm


def runtime_version() -> str:
    """For the worker's environment probe: the runtime imported as this file imports it."""
    return import_tvm(1).__version__


def connect(cfg: dict):
    """An RPC session to the server a tvm-rpc device names."""
    from tvm import rpc

    timeout = int(cfg.get("timeout", 600))
    if cfg.get("tracker"):
        host, port = cfg["tracker"]
        return rpc.connect_tracker(host, int(port)).request(cfg["key"], priority=1, session_timeout=timeout)
    return rpc.connect(cfg["host"], int(cfg["port"]), session_timeout=timeout)


class TvmModel(Model):
    runtime = "tvm"

    def __init__(self, path: str, threads: int):
        with open(os.path.join(path, MODULE_FILE)) as f:
            self.meta = json.load(f)
        tvm = import_tvm(threads)
        self.tvm = tvm
        self.version = tvm.__version__
        rpc_cfg = json.loads(os.environ.get("EDGEKIT_TVM_RPC") or "null")
        machine = (rpc_cfg or {}).get("arch") or platform.machine()
        built = self.meta.get("machine")
        if built and built != machine:
            raise RuntimeError(f"this module is built for {built} ({self.meta.get('target_text')}); "
                               f"this machine is {machine}")
        lib_path = os.path.join(path, self.meta.get("library", "lib.so"))
        if rpc_cfg:
            self.session = connect(rpc_cfg)
            name = f"edgekit-{uuid.uuid4().hex[:12]}.so"
            self.session.upload(lib_path, name)
            lib = self.session.load_module(name)
            self.dev = self.session.cpu()
            where = (f"tracker {rpc_cfg['tracker'][0]}:{rpc_cfg['tracker'][1]} key {rpc_cfg['key']}"
                     if rpc_cfg.get("tracker") else f"{rpc_cfg['host']}:{rpc_cfg['port']}")
            self.version = f"{tvm.__version__} (TVM RPC: {where})"
        else:
            self.session = None
            lib = tvm.runtime.load_module(lib_path)
            self.dev = tvm.cpu()
            pool = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
            if pool is not None:
                pool(1, int(threads))
        from tvm.runtime.vm import VirtualMachine

        self.vm = VirtualMachine(lib, self.dev)
        self.main = self.vm["main"]
        self.declare(self.meta["inputs"], self.meta["outputs"])

    def prepare(self, feed):
        out = {}
        for spec in self.inputs:
            a = fixed_input(feed, spec, "the module is built")
            out[spec["name"]] = self.tvm.runtime.tensor(a, self.dev)
        return out

    def _args(self, feed):
        return [feed[s["name"]] for s in self.inputs]

    def run(self, feed):
        result = self.main(*self._args(feed))
        arrays = _flatten(result)
        if len(arrays) != len(self.outputs):
            raise RuntimeError(f"the module returned {len(arrays)} outputs, its signature names {len(self.outputs)}")
        return {name: a.numpy() for name, a in zip(self.outputs, arrays)}

    def runtime_timer(self, feed, runs, seconds):
        """TVM's own timer, one call per repeat (as edgekit's loop), on the same VM and inputs."""
        per_call = seconds / max(runs, 1)
        repeat = max(3, min(runs, int(min(seconds, 30.0) / per_call) if per_call > 0 else runs))
        self.vm.set_input("main", *self._args(feed))
        timer = self.vm.time_evaluator("invoke_stateful", self.dev, number=1, repeat=repeat)
        r = timer("main")
        results = [float(x) for x in r.results]
        return {"name": "tvm time_evaluator", "p50_ms": float(np.median(results)) * 1e3,
                "mean_ms": float(np.mean(results)) * 1e3, "min_ms": float(np.min(results)) * 1e3,
                "n": len(results), "number": 1, "remote": self.session is not None}


def _flatten(result) -> list:
    if hasattr(result, "numpy"):
        return [result]
    out = []
    for item in result:
        out += _flatten(item)
    return out


MODEL = TvmModel
