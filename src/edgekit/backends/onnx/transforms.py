"""ONNX -> ONNX transform edges that apply a recipe: float16, dynamic int8, static int8 (QDQ)."""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np

from ...core.errors import ConversionError
from ...core.graph import Converter
from ...reports.fmt import calibration_text
from .ops import check_standard_ops

HUGE = 1e4  # constants beyond this (additive attention masks, -inf stand-ins) must stay float


def _count_ops(path: Path, *types: str) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in model.graph.node if n.op_type in types)


class Fp16OnnxFromOnnx(Converter):
    src, dst = "onnx", "onnx"
    recipes = frozenset({"fp16"})
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")

    @classmethod
    def judge(cls, domain, op, target, recipe, facts):
        from .preflight import judge_fp16

        return judge_fp16(domain, op, cls.name())

    @classmethod
    def preflight_notes(cls, facts, target, recipe):
        from .preflight import fp16_notes

        return fp16_notes()

    def convert(self, artifact, out_dir, ctx):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        check_standard_ops(artifact.path, self.name())
        model = onnx.load(str(artifact.path))
        model = convert_float_to_float16(model, keep_io_types=True)
        path = out_dir / "model.onnx"
        onnx.save(model, str(path))
        ctx.notes.append("float16 weights and compute, float32 I/O (keep_io_types)")
        return path


def _float_islands(model) -> list[str]:
    """Nodes that must stay float: those fed by a huge constant (additive attention mask),
    their elementwise descendants, and the first Add/Softmax that consumes them."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    huge = {k for k, v in consts.items() if v.dtype.kind == "f" and v.size and np.abs(v).max() > HUGE}
    if not huge:
        return []
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    tainted, names = set(huge), []
    stop = {"Softmax", "MatMul", "Gemm", "Conv"}
    frontier = list(huge)
    while frontier:
        t = frontier.pop()
        for n in consumers.get(t, []):
            if n.name in names or n.op_type in stop:
                continue
            names.append(n.name)
            for o in n.output:
                if o not in tainted:
                    tainted.add(o)
                    frontier.append(o)
    # the Softmax right after a masked Add sees the huge values too
    for n in model.graph.node:
        if n.op_type == "Softmax" and any(i in tainted for i in n.input):
            names.append(n.name)
    return [n for n in names if n]


class QuantizedOnnxFromOnnx(Converter):
    src, dst = "onnx", "onnx"
    recipes = frozenset({"int8-dynamic", "int8-static"})
    calibration_methods = frozenset({"minmax", "entropy", "percentile"})
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")
    revision = 3

    @classmethod
    def judge(cls, domain, op, target, recipe, facts):
        from .preflight import custom_domain, judge_quantizer

        if recipe.kind in cls.recipes:
            return judge_quantizer(domain, op, recipe, cls.name())
        return custom_domain(domain, cls.name())

    @classmethod
    def preflight_notes(cls, facts, target, recipe):
        from .preflight import quantizer_notes

        return quantizer_notes()

    def convert(self, artifact, out_dir, ctx):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        check_standard_ops(artifact.path, self.name())
        recipe = ctx.recipe
        work = out_dir / "work"
        work.mkdir()
        pre = work / "pre.onnx"
        self._preprocess(artifact.path, pre)
        path = out_dir / "model.onnx"
        model = onnx.load(str(pre))
        keep = _float_islands(model)
        if keep:
            ctx.notes.append(f"kept float: {len(keep)} nodes fed by huge constants (e.g. an attention mask)")
        if recipe.kind == "int8-dynamic":
            quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8,
                             per_channel=recipe.weights_per_channel,
                             nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True})
            done = _count_ops(path, "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv",
                              "QLinearMatMul", "DynamicQuantizeMatMul")
            ctx.notes.append(f"dynamic int8: {done} integer/quantize nodes")
        else:
            self._static(pre, path, ctx, keep)
            done = _count_ops(path, "QuantizeLinear")
            cap = recipe.calibration.samples
            ctx.notes.append(f"static int8 QDQ ({recipe.calibration.method}, "
                             f"{'per-channel' if recipe.calibration.per_channel else 'per-tensor'}, "
                             f"{calibration_text(min(ctx.data.n_calib, cap), ctx.data.n_calib, cap)}): "
                             f"{done} QuantizeLinear nodes")
        if done == 0:
            raise ConversionError(self.name(), "the quantizer returned a model with nothing quantized in it.",
                                  "The graph may keep its weights in subgraphs (If/Loop) or non-initializers.")
        shutil.rmtree(work, ignore_errors=True)
        return path

    def _preprocess(self, src: Path, dst: Path) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception:
            shutil.copyfile(src, dst)  # pre-processing is an optimisation; quantize the model as it is

    def _static(self, pre: Path, path: Path, ctx, keep: list[str]) -> None:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        cal = ctx.recipe.calibration
        import onnxruntime as ort

        sess = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
        inputs = sess.get_inputs()
        del sess
        data = ctx.data.calib
        stacked = ctx.data.stacked
        n = min(ctx.data.n_calib, cal.samples)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= n:
                    return None
                feed = {}
                for inp in inputs:
                    arr = data[inp.name] if inp.name in data else next(iter(data.values()))
                    dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
                             "tensor(int32)": np.int32}.get(inp.type, np.float32)
                    one = arr[self.i] if inp.name in stacked else arr[self.i:self.i + 1]
                    feed[inp.name] = np.asarray(one).astype(dtype)
                self.i += 1
                return feed

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[cal.method]
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if cal.method == "percentile":
            extra["CalibPercentile"] = cal.percentile
        if ctx.recipe.quantize_ops:
            extra["op_types_to_quantize"] = list(ctx.recipe.quantize_ops)
        op_types = extra.pop("op_types_to_quantize", None)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=cal.per_channel,
                            op_types_to_quantize=op_types,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, nodes_to_exclude=keep, extra_options=extra)
