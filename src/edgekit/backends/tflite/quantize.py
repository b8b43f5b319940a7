"""float .tflite -> int8 .tflite with ai-edge-quantizer: static int8 calibrated on the data's
calibration samples (fed by signature input name), a second way to TFLite int8 beside the TFLite
converter: after litert-torch or onnx2tf has made the float model, and for models the converter's
full-integer step refuses (MiniLM: int64 token inputs). It also applies an accuracy budget (keeps
the most sensitive layers float until it is met: ``mixed.py``) and says where int8 loses accuracy
(``diagnose.py``).

Whatever the recipe, the ops that write or read a mask stand-in (-inf or finfo.min added to attention
scores) stay float, found on the samples (``diagnose.never_quantize``), and so do the ops LiteRT
refuses to run in int8 on the calibration samples (``aeq.Quantizer.runnable``)."""
from __future__ import annotations

import shutil

from ...core.errors import ConversionError
from ...core.graph import Converter
from ...reports.fmt import calibration_text

# the operator types a recipe's ``quantize_ops`` names (ONNX's), as ai-edge-quantizer names TFLite ops
TFLITE_OPS = {"MatMul": ("FULLY_CONNECTED", "BATCH_MATMUL"), "Gemm": ("FULLY_CONNECTED",),
              "Conv": ("CONV_2D", "DEPTHWISE_CONV_2D"), "ConvTranspose": ("CONV_2D_TRANSPOSE",)}


class QuantizedTfliteFromTflite(Converter):
    src, dst = "tflite", "tflite"
    # a float TFLite model, then this: right after the TFLite converter's own full-integer route from
    # the same float model (torch: 4.0, then 4.1 here, reusing its cached SavedModel when that route
    # fails; litert-torch's float model then this, 4.3, before onnx2tf's NHWC variant)
    cost = 0.1
    # int8-dynamic: int8 weights, activations quantized at run time (no calibration); after litert-torch's
    # float model it is the fast route for transformers (MiniLM: 0.77x onnx2tf's dynamic-range file's p50
    # in the same run, cosine 0.998, converted in ~20 s instead of ~4 min)
    recipes = frozenset({"int8-static", "int8-dynamic"})
    calibration_methods = frozenset({"minmax"})
    calibration_settings = frozenset({"samples", "per_channel", "symmetric"})
    meets_budget = True
    io_dtypes = frozenset({"float32", "int8"})
    requires = (("ai_edge_quantizer", "tflite"), ("ai_edge_litert", "tflite"))
    tools = ("ai-edge-quantizer", "ai-edge-litert")
    uses_data = True
    revision = 5  # 5: int8-I/O models checked with quantized inputs; 4: accuracy-aware: weighted layers to dynamic int8; 3: int8 embedding tables; 2: min/max over all calibration samples (not ai-edge-quantizer's moving average)

    @classmethod
    def refuses(cls, recipe, target):
        unknown = sorted(set(recipe.quantize_ops) - set(TFLITE_OPS))
        if unknown:
            return f"cannot restrict int8 to operator types {', '.join(unknown)}"
        if recipe.kind == "int8-static" and target.option("buckets") is not None:
            return "calibrates one signature only (shape buckets take dynamic-range int8)"
        return super().refuses(recipe, target)

    def _quantizer(self, artifact, work, ctx):
        from .aeq import Quantizer

        if ctx.data is None or not ctx.data.n_calib:
            raise ConversionError(self.name(), "static int8 needs calibration samples, and none were given.",
                                  "Pass --data or --calib-data.")
        return Quantizer(artifact.path, work, ctx.recipe, ctx.target.io_dtype, ctx.data, self.name(),
                         tuple(dict.fromkeys(op for name in ctx.recipe.quantize_ops for op in TFLITE_OPS[name])))

    def diagnose(self, artifact, out_dir, ctx, sensitivity):
        from .diagnose import diagnose_int8

        return diagnose_int8(self, self._quantizer(artifact, out_dir / "q", ctx), ctx, sensitivity)

    def convert(self, artifact, out_dir, ctx):
        if ctx.recipe.kind == "int8-dynamic":
            return self._dynamic(artifact, out_dir, ctx)
        from .diagnose import never_quantize

        work = out_dir / "work"
        qz = self._quantizer(artifact, work, ctx)
        keep, why = never_quantize(qz)
        recipe = ctx.recipe
        if recipe.budget is not None:
            from .mixed import accuracy_aware

            made = accuracy_aware(qz, keep, ctx)
        else:
            made = qz.runnable(keep)
        path = out_dir / "model.tflite"
        shutil.move(str(made), str(path))
        shutil.rmtree(work, ignore_errors=True)
        cal = recipe.calibration
        used = min(ctx.data.n_calib, cal.samples)
        counts = kernel_counts(path)
        if not counts["int"]:
            raise ConversionError(self.name(), "ai-edge-quantizer returned a model with no integer kernel in it.")
        ctx.notes.insert(0, f"ai-edge-quantizer static int8 ({cal.label()}, "
                            f"{calibration_text(used, ctx.data.n_calib, cal.samples)}"
                            + (f", int8 on {', '.join(qz.only)} only" if qz.only else "")
                            + f"): {counts['int']} integer kernels, {counts['float']} float")
        if why:
            ctx.notes.append(f"kept float: {len(keep)} ops around a mask stand-in: " + "; ".join(why))
        if qz.refused:
            ctx.notes.append(f"kept float: {len(qz.refused)} ops LiteRT cannot run in int8 on the calibration samples "
                             f"(e.g. an int8 divisor at its zero point): {', '.join(map(qz.graph.labels.get, qz.refused[:4]))}")
        return path


    def _dynamic(self, artifact, out_dir, ctx):
        """Dynamic-range int8 (ai-edge-quantizer's dynamic_wi8_afp32): the weights of every op that
        has a dynamic-range kernel in int8, one scale per output channel unless the recipe says per tensor."""
        from ai_edge_quantizer import quantizer, recipe as aeq_recipe

        from ...core.lazy import native_output_silenced

        rules = aeq_recipe.dynamic_wi8_afp32()
        granularity = "CHANNELWISE" if ctx.recipe.weights_per_channel else "TENSORWISE"
        for rule in rules:
            rule["op_config"]["weight_tensor_config"]["granularity"] = granularity
        try:
            with native_output_silenced():
                q = quantizer.Quantizer(str(artifact.path), rules)
                blob = q.quantize(enable_progress_bar=False, enable_progress_report=False).quantized_model
        except (ValueError, RuntimeError) as e:
            first = next((ln for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)
            raise ConversionError(self.name(), f"ai-edge-quantizer failed (dynamic range): {first[:300]}") from None
        path = out_dir / "model.tflite"
        tmp = out_dir / "model.tflite.part"
        tmp.write_bytes(bytes(blob))
        tmp.replace(path)
        ctx.notes.insert(0, "ai-edge-quantizer dynamic-range int8 (int8 weights, "
                            + ("per-channel" if ctx.recipe.weights_per_channel else "per-tensor")
                            + ", activations quantized at run time)")
        return path


def kernel_counts(path) -> dict:
    """How many ops compute in int8/int16 and how many in float (QUANTIZE/DEQUANTIZE left out)."""
    from .kernels import IO_OPS, kernels

    out = {"int": 0, "float": 0}
    for k in kernels(path):
        if k["op"] in IO_OPS or not k["outputs"]:
            continue
        if any(t.startswith("float") for t in k["outputs"]):
            out["float"] += 1
        elif any(t in ("int8", "int16") for t in k["outputs"]):
            out["int"] += 1
    return out


def layer_tolerance(min_cosine: float) -> float:
    """The relative error that corresponds to a cosine floor (1 - cos ~ err^2 / 2), as on ONNX."""
    return (2.0 * (1.0 - min_cosine)) ** 0.5
