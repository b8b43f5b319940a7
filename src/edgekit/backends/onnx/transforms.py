"""ONNX -> ONNX transform edges that apply a recipe: float16, dynamic int8, static int8 (QDQ)."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np

from ...core.errors import ConversionError
from ...core.graph import Converter
from ...reports.fmt import calibration_text
from .ops import check_standard_ops

HUGE = 1e4  # constants beyond this (additive attention masks, -inf stand-ins) must stay float


class Fp16OnnxFromOnnx(Converter):
    src, dst = "onnx", "onnx"
    recipes = frozenset({"fp16"})
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")
    uses_data = True  # what stays fp32 is found on the calibration samples
    revision = 2

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

        from .fp16 import keep_fp32, kept_note, to_fp16

        check_standard_ops(artifact.path, self.name())
        model = onnx.load(str(artifact.path))
        path = out_dir / "model.onnx"
        data = ctx.data if ctx.data is not None and ctx.data.n_calib else None
        if data is None:
            onnx.save(to_fp16(model), str(path))
            ctx.notes.append("float16 weights and compute, float32 I/O (keep_io_types)")
            ctx.notes.append("no calibration data: every node is fp16, none checked for fp16 range or error "
                             "(pass --data to keep in fp32 what fp16 cannot hold)")
            return path
        aim = 1.0 - (1.0 - ctx.target.tolerance.min_cosine) / 10
        try:
            half, why, before, after, n = keep_fp32(model, data, aim)
        except Exception as e:  # the analysis is a help, not a requirement: the proof still judges
            onnx.save(to_fp16(model), str(path))
            first = (str(e).strip().splitlines() or [""])[0][:200]
            ctx.notes.append("float16 weights and compute, float32 I/O (keep_io_types); every node fp16: the "
                             f"search for what must stay fp32 failed ({type(e).__name__}: {first})")
            return path
        onnx.save(half, str(path))
        synthetic = " (synthetic data)" if data.synthetic else ""
        ctx.notes.append(f"float16 weights and compute, float32 I/O (keep_io_types); {len(why)} nodes kept fp32")
        if why:
            ctx.notes.append(kept_note(why))
        ctx.notes.append(f"fp16 vs fp32 cosine on {n} calibration samples{synthetic}: {after:.6f}"
                         + (f" (all-fp16: {before:.6f})" if why else ""))
        return path


class OptimizedOnnxFromOnnx(Converter):
    """fp32 with ONNX Runtime's transformer fusions (``fusion.py``)."""

    src, dst = "onnx", "onnx"
    recipes = frozenset({"optimize"})
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")

    def convert(self, artifact, out_dir, ctx):
        from .fusion import fuse

        check_standard_ops(artifact.path, self.name())
        path = out_dir / "model.onnx"
        stats = fuse(Path(artifact.path), path)
        ctx.notes.append("transformer fusions (ONNX Runtime's optimizer): " + (
            ", ".join(f"{k} x{v}" for k, v in sorted(stats.items())) if stats else
            "no pattern fused; the graph is unchanged apart from its clean-up"))
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
    calibration_settings = frozenset({"samples", "per_channel", "symmetric"})
    meets_budget = True
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")
    uses_data = True  # dynamic int8 too: a collapse found on the calibration samples is repaired
    revision = 7  # 7: calibration choices (symmetric), accuracy budgets

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

    def prepare(self, artifact, work: Path, ctx):
        """Pre-process the float model for the quantizer in ``work``: (model, quantize, keep), where
        ``quantize(exclude, calib=None) -> path`` writes a new int8 model with the nodes ``exclude``
        left float (``calib``: the calibration sample indices, default the recipe's first ones) and
        ``keep`` lists the nodes that must stay float whatever the recipe."""
        import onnx

        from .graph_edits import constants_to_initializers
        from .precision import name_nodes

        check_standard_ops(artifact.path, self.name())
        recipe = ctx.recipe
        work.mkdir(exist_ok=True)
        pre = work / "pre.onnx"
        self._preprocess(artifact.path, pre)
        model = onnx.load(str(pre))
        # the quantizer reads weights from initializers only ("Expected conv2d_394.w_0 to be an initializer"
        # on paddle2onnx exports, which keep them in Constant nodes)
        # (dynamic int8 only, and only when a weight comes from a Constant: for static QDQ the moved
        # constants made ONNX Runtime refuse the result on the same graphs, INVALID_GRAPH)
        moved = constants_to_initializers(model) if recipe.kind == "int8-dynamic" and _weights_in_constants(model) \
            else 0
        if name_nodes(model) or moved:  # nodes_to_exclude names nodes
            onnx.save(model, str(pre))
        if moved:
            ctx.notes.append(f"{moved} Constant nodes as initializers (where the quantizer reads weights)")
        keep = _float_islands(model)
        if keep:
            ctx.notes.append(f"kept float: {len(keep)} nodes fed by huge constants (e.g. an attention mask)")
        dynamic = recipe.kind == "int8-dynamic"

        def quantize(exclude: list[str], calib: range | None = None) -> Path:
            made = work / f"int8-{len(list(work.glob('int8-*.onnx')))}.onnx"
            if dynamic:
                self._dynamic(pre, made, ctx, exclude)
            else:
                self._static(pre, made, ctx, exclude, calib)
            return made

        return model, quantize, keep

    def diagnose(self, artifact, out_dir, ctx, sensitivity):
        from .diagnose import diagnose_int8

        return diagnose_int8(self, artifact, out_dir, ctx, sensitivity)

    def convert(self, artifact, out_dir, ctx):
        from .int8 import excluded_note, repair

        recipe = ctx.recipe
        work = out_dir / "work"
        model, quantize, keep = self.prepare(artifact, work, ctx)
        path = out_dir / "model.onnx"
        if recipe.budget is not None and ctx.data is not None and ctx.data.n_calib:
            from .mixed import accuracy_aware

            made = accuracy_aware(model, quantize, keep, ctx)
            shutil.move(str(made), str(path))
            return self._finish(model, path, work, ctx)
        data = ctx.data if ctx.data is not None and ctx.data.n_calib else None
        if data is None:  # dynamic int8 needs no data; without it, nothing is checked here
            made = quantize(keep)
            ctx.notes.append("no calibration data: int8 parity not checked nor repaired at conversion")
        else:
            tol = ctx.target.tolerance
            floor, aim = tol.smoke_cosine, max(tol.smoke_cosine, 1.0 - (1.0 - tol.min_cosine) * 0.75)
            fix = repair(model, quantize, keep, data, floor, aim)
            made, history, n = fix.path, fix.history, fix.samples
            trail = " -> ".join(f"{c:.4f}" for c in history)
            if fix.excluded:
                ctx.notes.append(f"int8 collapsed (cosine {history[0]:.4f} < {floor:.4f} on {n} calibration "
                                 f"samples); layers kept float over {len(history) - 1} rounds: {trail}")
                ctx.notes.append(excluded_note(fix.excluded))
            else:
                ctx.notes.append(f"int8 vs float cosine on {n} calibration samples: {trail}")
            if fix.problem:
                ctx.notes.append(fix.problem)
            if history[-1] < floor and not fix.problem:
                blamed = list(dict.fromkeys(list(fix.suspects) + list(fix.excluded)))
                named = ", ".join(blamed[:8]) + (f" (+{len(blamed) - 8} more)" if len(blamed) > 8 else "")
                raise ConversionError(self.name(), f"int8 collapses: cosine {history[-1]:.4f} < {floor:.4f} on {n} "
                                      f"calibration samples ({trail}; {len(fix.excluded)} layers kept float); "
                                      f"layers responsible: {named or 'none found'}.",
                                      "A gentler recipe (int8 on the linear layers only, dynamic int8) or fp16.")
        shutil.move(str(made), str(path))
        return self._finish(model, path, work, ctx)

    def _finish(self, model, path: Path, work: Path, ctx) -> Path:
        import onnx

        from .int8 import counts_note, n_quantized, quantized_counts

        recipe = ctx.recipe
        counts = quantized_counts(model, onnx.load(str(path), load_external_data=False))
        if recipe.kind == "int8-dynamic":
            head = f"dynamic int8 ({'per-channel' if recipe.weights_per_channel else 'per-tensor'} weights)"
        else:
            cal = recipe.calibration
            used = min(ctx.data.n_calib, cal.samples)
            head = f"static int8 QDQ ({cal.label()}, {calibration_text(used, ctx.data.n_calib, cal.samples)})"
        ctx.notes.append(f"{head}: {counts_note(counts)}")
        if n_quantized(counts) == 0:
            raise ConversionError(self.name(), "the quantizer returned a model with nothing quantized in it.",
                                  "The graph may keep its weights in subgraphs (If/Loop) or non-initializers.")
        shutil.rmtree(work, ignore_errors=True)
        return path

    def _preprocess(self, src: Path, dst: Path) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        here = os.getcwd()
        src, dst = Path(src).resolve(), Path(dst).resolve()  # (a relative model path is the user's cwd's)
        try:  # its symbolic shape inference writes temp files into the current folder: keep them in ours
            os.chdir(dst.parent)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception:
            shutil.copyfile(src, dst)  # pre-processing is an optimisation; quantize the model as it is
        finally:
            os.chdir(here)

    def _dynamic(self, pre: Path, path: Path, ctx, exclude: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # the dynamic quantizer first splits each Gemm into '<name>_MatMul' + '<name>_Add'
        exclude = [x for name in exclude for x in (name, f"{name}_MatMul", f"{name}_Add")]
        quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8, per_channel=ctx.recipe.weights_per_channel,
                         nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True})

    def _static(self, pre: Path, path: Path, ctx, exclude: list[str], calib: range | None = None) -> None:
        import onnxruntime as ort
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        from .precision import feed_at

        cal = ctx.recipe.calibration
        sess = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
        inputs = sess.get_inputs()
        del sess
        data = ctx.data
        picks = list(calib if calib is not None else range(min(data.n_calib, cal.samples)))

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(picks):
                    return None
                self.i += 1
                return feed_at(inputs, data, picks[self.i - 1])

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[cal.method]
        extra = {"ActivationSymmetric": cal.symmetric, "WeightSymmetric": True}
        if cal.method == "percentile":
            extra["CalibPercentile"] = cal.percentile
        op_types = list(ctx.recipe.quantize_ops) or None
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=cal.per_channel,
                            op_types_to_quantize=op_types,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, nodes_to_exclude=exclude, extra_options=extra,
                            # ranges are measured once per set of samples; a re-quantization with
                            # other layers float reuses them
                            calibration_cache_path=path.parent / f"ranges-{picks[0]}-{len(picks)}.json")


def _weights_in_constants(model) -> bool:
    """Whether a Conv/MatMul/Gemm weight is the output of a Constant node (quantize_dynamic then fails)."""
    consts = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return any(n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in consts
               for n in model.graph.node)
