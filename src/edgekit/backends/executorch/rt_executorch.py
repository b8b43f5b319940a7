"""The ExecuTorch side of the runner (shipped to devices; numpy + an ExecuTorch runtime).

Loads a ``.pte`` program and runs its ``forward`` method: XNNPACK runs the delegated subgraphs on
ExecuTorch's threadpool (sized to the threads asked for), the portable and optimized kernels the
rest. Two runtimes can do it: ExecuTorch's own Python runtime (the ``executorch`` wheel, which binds
to torch's tensors), or, where that is not installed, the torch-free ``executorch-numpy-runtime``
(numpy arrays in and out; Python >= 3.12). Input and output names come from the program's
``edgekit_signature`` constant method (JSON in a uint8 tensor, written by edgekit's converter); a
program without it gets ``input_0``, ``output_0``... and its method metadata's shapes and dtypes.
"""
from __future__ import annotations

import json

import numpy as np

try:
    from runtime_base import Model, fixed_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, fixed_input

SIGNATURE_METHOD = "edgekit_signature"
# ExecuTorch's ScalarType codes (method metadata) -> numpy dtypes
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool"}


def _runtime():
    """ExecuTorch's runtime without its exporter: the bindings import ``executorch.exir._warnings``
    only, but importing it runs ``executorch.exir``'s package (torch.export, torchao, the passes:
    seconds, hundreds of MB). While they import, a bare package stands in for ``executorch.exir`` so
    that only that file loads; it is gone afterwards (an exporter imported later is the real one)."""
    import importlib.util
    import sys
    import types

    if "executorch.runtime" not in sys.modules and "executorch.exir" not in sys.modules:
        spec = importlib.util.find_spec("executorch")
        stand_in = types.ModuleType("executorch.exir")
        stand_in.__path__ = [p + "/exir" for p in spec.submodule_search_locations]
        sys.modules["executorch.exir"] = stand_in
        try:
            from executorch.runtime import Runtime
        finally:
            if sys.modules.get("executorch.exir") is stand_in:
                del sys.modules["executorch.exir"]
            package = sys.modules.get("executorch")
            if getattr(package, "exir", None) is stand_in:
                delattr(package, "exir")
    from executorch.runtime import Runtime

    return Runtime.get()


def _numpy_runtime():
    """The torch-free runtime, or None when it is not installed."""
    try:
        import executorch_numpy_runtime as enr
    except ImportError:
        return None
    return enr


def _has_executorch() -> bool:
    import importlib.util

    return importlib.util.find_spec("executorch") is not None and importlib.util.find_spec("torch") is not None


def runtime_version() -> str:
    from importlib.metadata import version

    if _has_executorch():
        return version("executorch")
    enr = _numpy_runtime()
    if enr is None:
        raise ImportError("neither executorch nor executorch-numpy-runtime is installed")
    return f"{enr.__et_version__} (executorch-numpy-runtime {enr.__version__}, no torch)"


class ExecuTorchModel(Model):
    runtime = "executorch"

    def __init__(self, path: str, threads: int):
        self.torch = None
        if _has_executorch():
            import torch

            self.torch = torch
            runtime = _runtime()
            try:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(int(threads))
            except (ImportError, AttributeError):  # an ExecuTorch without it keeps its default pool
                pass
        else:
            enr = _numpy_runtime()
            if enr is None:
                raise ImportError("neither executorch nor executorch-numpy-runtime is installed")
            runtime = enr.Runtime.get()
        self.version = runtime_version()
        self.program = runtime.load_program(path)
        self.method = self.program.load_method("forward")
        self._call = self.method.execute if self.torch is not None else self.method
        meta = self._meta()
        sig = None
        if SIGNATURE_METHOD in self.program.method_names:
            method = self.program.load_method(SIGNATURE_METHOD)
            raw = (method.execute if self.torch is not None else method)([])[0]
            sig = json.loads(raw if isinstance(raw, str) else bytes(np.asarray(raw, dtype=np.uint8)).decode())
        if sig is None:
            sig = {"inputs": [{"name": f"input_{i}", "shape": shape, "dtype": dtype}
                              for i, (shape, dtype) in enumerate(meta["inputs"])],
                   "outputs": [f"output_{i}" for i in range(meta["outputs"])]}
        self.declare(sig["inputs"], sig["outputs"])
        if len(self.inputs) != len(meta["inputs"]):
            raise RuntimeError(f"the program's forward takes {len(meta['inputs'])} inputs; its signature names "
                               f"{len(self.inputs)}")

    def _meta(self) -> dict:
        """{"inputs": [(shape, dtype)], "outputs": count} of the forward method, from either runtime."""
        meta = self.method.metadata
        if self.torch is None:  # executorch-numpy-runtime: a dict
            return {"inputs": [(list(i["shape"]), SCALAR_TYPES.get(int(i["scalar_type"]), "float32"))
                               for i in meta["inputs"]], "outputs": int(meta["num_outputs"])}
        ins = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        return {"inputs": [(list(t.sizes()), SCALAR_TYPES.get(int(t.dtype()), "float32")) for t in ins],
                "outputs": meta.num_outputs()}

    def prepare(self, feed):
        out = {}
        for spec in self.inputs:
            a = fixed_input(feed, spec, "the program is exported")
            out[spec["name"]] = self.torch.from_numpy(a) if self.torch is not None else a
        return out

    def run(self, feed):
        result = self._call([feed[s["name"]] for s in self.inputs])
        if len(result) != len(self.outputs):
            raise RuntimeError(f"the program returned {len(result)} outputs, its signature names {len(self.outputs)}")
        return {name: np.asarray(t) for name, t in zip(self.outputs, result)}


MODEL = ExecuTorchModel
