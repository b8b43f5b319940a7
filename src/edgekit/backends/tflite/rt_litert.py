"""The LiteRT (TFLite) side of the runner (shipped to devices; numpy + ai-edge-litert or tflite-runtime only)."""
from __future__ import annotations

import numpy as np

try:
    from runtime_base import Model, lookup_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, lookup_input


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


MODEL = LiteRtModel
