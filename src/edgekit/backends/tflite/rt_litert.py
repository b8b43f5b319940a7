"""The LiteRT (TFLite) side of the runner (shipped to devices; numpy + ai-edge-litert or tflite-runtime only).

A model whose signatures are all named ``seqN`` holds one shape bucket each (sequence length N on axis 1,
the weights shared): ``prepare`` picks the smallest bucket holding the sample's used length (right
padding with 0) and trims the feed to it, and ``run`` calls that bucket's subgraph."""
from __future__ import annotations

import re

import numpy as np

try:
    from runtime_base import Model, bucket_for, lookup_input, trim
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, bucket_for, lookup_input, trim

BUCKET = re.compile(r"seq(\d+)$")
AXIS = 1  # the bucketed (sequence) axis


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
        self.buckets, self.counts = (), {}
        if sigs and len(sigs) > 1 and all(BUCKET.match(s) for s in sigs):
            self._bucketed(sigs)
        elif sigs:  # names as the converter kept them (the ONNX/torch input names)
            runner = self.interpreter.get_signature_runner(next(iter(sigs)))
            self.in_details = runner.get_input_details()
            self.out_details = runner.get_output_details()
            del runner  # it holds references that would block allocate_tensors
        else:
            self.in_details = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.out_details = {d["name"]: d for d in self.interpreter.get_output_details()}
        if not self.buckets:  # (bucketed: each subgraph allocated already)
            self.interpreter.allocate_tensors()
        self.shapes = {n: tuple(d["shape"]) for n, d in self.in_details.items()}
        first = next(iter(self.in_details.values()))
        sig = first.get("shape_signature", first["shape"])
        self.batch_limit = int(sig[0]) if len(sig) and int(sig[0]) > 0 else None

    def _bucketed(self, sigs):
        """One (subgraph, input details, output details) per bucket length; the inputs and outputs the
        records show are the longest bucket's (the source's full shape)."""
        # the subgraph-indexed tensor API the signature runner uses (holding it makes the interpreter's own
        # allocate_tensors refuse: each subgraph is allocated here instead)
        wrapper = self.interpreter._interpreter
        self.subgraphs = {}
        for name in sorted(sigs, key=lambda s: int(BUCKET.match(s).group(1))):
            runner = self.interpreter.get_signature_runner(name)
            sub = runner._subgraph_index
            ins, outs = runner.get_input_details(), runner.get_output_details()
            del runner
            wrapper.AllocateTensors(sub)
            self.subgraphs[int(BUCKET.match(name).group(1))] = (
                sub, tuple((n, d["index"]) for n, d in ins.items()), tuple((n, d["index"]) for n, d in outs.items()))
            self.in_details, self.out_details = ins, outs
        self.buckets = tuple(self.subgraphs)
        self.wrapper = wrapper
        # the input whose length on the axis names the bucket a prepared feed is in
        self._lead = next(n for n, d in ins.items() if len(d["shape"]) > AXIS and d["shape"][AXIS] == self.buckets[-1])

    def input_specs(self):
        return [{"name": n, "shape": [int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"])],
                 "dtype": np.dtype(d["dtype"]).name} for n, d in self.in_details.items()]

    def output_names(self):
        return list(self.out_details)

    def usage(self):
        counts, self.counts = self.counts, {}
        return {"buckets": counts} if counts else None

    def prepare(self, feed):
        out = {}
        for name, d in self.in_details.items():
            a = lookup_input(feed, name)
            dtype = np.dtype(d["dtype"])
            scale, zero = d.get("quantization", (0.0, 0))
            if dtype.kind in "iu" and a.dtype.kind == "f" and scale:
                info = np.iinfo(dtype)
                a = np.clip(np.round(a / scale + zero), info.min, info.max)
            out[name] = a.astype(dtype, copy=False)
        if self.buckets:  # as an app pads to the bucket: outside the timed path
            length = bucket_for(out, self.buckets, AXIS)
            out = trim(out, length, AXIS, self.buckets[-1])
            if out[self._lead].shape[AXIS] != length:
                raise ValueError(f"input '{self._lead}' has shape {list(out[self._lead].shape)}; the model's buckets "
                                 f"are {list(self.buckets)} long on axis {AXIS} (give inputs padded to {self.buckets[-1]})")
            key = f"seq{length}"
            self.counts[key] = self.counts.get(key, 0) + 1
        return {k: np.ascontiguousarray(a) for k, a in out.items()}

    def run(self, feed):
        if self.buckets:
            return self._run_bucket(feed)
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
        return self._dequantized({n: interp.get_tensor(d["index"]) for n, d in self.out_details.items()})

    def _run_bucket(self, feed):
        w = self.wrapper
        sub, ins, outs = self.subgraphs[feed[self._lead].shape[AXIS]]
        for name, index in ins:
            w.SetTensor(index, feed[name], sub)
        w.Invoke(sub)
        return self._dequantized({n: w.GetTensor(index, sub) for n, index in outs})

    def _dequantized(self, raw):
        out = {}
        for name, a in raw.items():
            scale, zero = self.out_details[name].get("quantization", (0.0, 0))
            out[name] = (a.astype(np.float32) - zero) * scale if a.dtype.kind in "iu" and scale else a
        return out


MODEL = LiteRtModel
