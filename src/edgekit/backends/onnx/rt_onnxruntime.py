"""The ONNX Runtime side of the runner (shipped to devices; numpy + onnxruntime only)."""
from __future__ import annotations

import numpy as np

try:
    from runtime_base import Model, lookup_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, lookup_input


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


MODEL = OnnxRuntimeModel
