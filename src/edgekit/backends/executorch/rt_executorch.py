"""The ExecuTorch side of the runner (shipped to devices; numpy + executorch, whose Python runtime
binds to torch's tensors).

Loads a ``.pte`` program with ExecuTorch's runtime and runs its ``forward`` method: XNNPACK runs
the delegated subgraphs on ExecuTorch's threadpool (sized to the threads asked for), the portable
and optimized kernels the rest. Input and output names come from the program's
``edgekit_signature`` constant method (written by edgekit's converter); a program without it gets
``input_0``, ``output_0``... and the shapes and dtypes of its method's metadata.
"""
from __future__ import annotations

import json

import numpy as np

try:
    from runtime_base import Model, lookup_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, lookup_input

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


def runtime_version() -> str:
    from importlib.metadata import version

    return version("executorch")


class ExecuTorchModel(Model):
    runtime = "executorch"

    def __init__(self, path: str, threads: int):
        import torch

        self.torch = torch
        runtime = _runtime()
        try:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        except (ImportError, AttributeError):  # an ExecuTorch without it keeps its default pool
            pass
        self.version = runtime_version()
        self.program = runtime.load_program(path)
        self.method = self.program.load_method("forward")
        meta = self.method.metadata
        sig = None
        if SIGNATURE_METHOD in self.program.method_names:
            sig = json.loads(self.program.load_method(SIGNATURE_METHOD).execute([])[0])
        if sig is None:
            sig = {"inputs": [{"name": f"input_{i}", "shape": list(meta.input_tensor_meta(i).sizes()),
                               "dtype": SCALAR_TYPES.get(int(meta.input_tensor_meta(i).dtype()), "float32")}
                              for i in range(meta.num_inputs())],
                   "outputs": [f"output_{i}" for i in range(meta.num_outputs())]}
        self.inputs = sig["inputs"]
        self.outputs = list(sig["outputs"])
        if len(self.inputs) != meta.num_inputs():
            raise RuntimeError(f"the program's forward takes {meta.num_inputs()} inputs; its signature names "
                               f"{len(self.inputs)}")
        first = self.inputs[0]["shape"] if self.inputs else []
        self.batch_limit = int(first[0]) if first else None

    def input_specs(self):
        return [dict(s) for s in self.inputs]

    def output_names(self):
        return list(self.outputs)

    def prepare(self, feed):
        out = {}
        for spec in self.inputs:
            a = np.ascontiguousarray(np.asarray(lookup_input(feed, spec["name"])).astype(spec["dtype"], copy=False))
            if list(a.shape) != list(spec["shape"]):
                raise ValueError(f"input '{spec['name']}' has shape {list(a.shape)}; the program is exported for "
                                 f"{spec['shape']}")
            out[spec["name"]] = self.torch.from_numpy(a)
        return out

    def run(self, feed):
        result = self.method.execute([feed[s["name"]] for s in self.inputs])
        if len(result) != len(self.outputs):
            raise RuntimeError(f"the program returned {len(result)} outputs, its signature names {len(self.outputs)}")
        return {name: t.numpy() for name, t in zip(self.outputs, result)}


MODEL = ExecuTorchModel
