"""SavedModel/Keras -> TFLite with the TFLite converter, which applies fp16, dynamic-range int8 and
full-integer int8 with calibration (the kernel types are checked after conversion)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from ...core.lazy import import_quietly, native_output_silenced
from ...reports.fmt import calibration_text
from ...runner.runtime_base import lookup_input


def _tflite_convert(make_converter, out_dir: Path, ctx, edge: str, signature_inputs: dict) -> Path:
    tf = import_quietly("tensorflow", "tflite", "The TFLite converter")

    converter = make_converter()
    recipe, target = ctx.recipe, ctx.target
    if recipe.kind == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif recipe.kind == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif recipe.kind == "int8-static":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(ctx, signature_inputs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not recipe.calibration.per_channel:
            converter._experimental_disable_per_channel = True
        if target.io_dtype == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with native_output_silenced():
            blob = converter.convert()
    except Exception as e:
        text = str(e)
        import re

        m = re.search(r"'(tf|tfl)\.([A-Za-z0-9_]+)' op", text) or re.search(r"op '?([A-Za-z0-9_]+)'? .*not supported",
                                                                          text)
        if m and ("not supported" in text or "failed to legalize" in text.lower() or "quantiz" in text.lower()):
            raise UnsupportedOperator(edge, m.group(m.lastindex), "the TFLite converter cannot lower it"
                                      + (" to int8" if recipe.kind == "int8-static" else "")) from None
        first = next((ln for ln in text.strip().splitlines() if ln.strip()), type(e).__name__)
        raise ConversionError(edge, f"TFLite converter failed: {first[:300]}") from None
    path = out_dir / "model.tflite"
    path.write_bytes(blob)
    if recipe.kind == "int8-static":
        from .kernels import float_kernels

        floats = float_kernels(path)
        if floats:
            raise ConversionError(edge, f"the model is not full integer: {', '.join(floats[:5])} run in float.")
        cap = recipe.calibration.samples
        ctx.notes.append(f"full integer: int8 kernels throughout, {target.io_dtype} I/O, "
                         f"{calibration_text(min(ctx.data.n_calib, cap), ctx.data.n_calib, cap)} (min/max)")
    return path


def _representative(ctx, signature_inputs: dict):
    data = ctx.data.calib
    stacked = {k for k in data if k in ctx.data.stacked}
    n = min(ctx.data.n_calib, ctx.recipe.calibration.samples)

    def pick(name):
        try:
            return lookup_input(data, name)
        except KeyError as e:
            raise ConversionError("calibration", f"no calibration array for input '{name}' (have {sorted(data)}).") \
                from e

    def gen():
        for i in range(n):
            yield {name: np.asarray(pick(name)[i] if name in stacked else pick(name)[i:i + 1]).astype(dtype)
                   for name, dtype in signature_inputs.items()}

    return gen


class TfliteFromSavedModel(Converter):
    src, dst = "savedmodel", "tflite"
    recipes = frozenset({"none", "fp16", "int8-dynamic", "int8-static"})
    io_dtypes = frozenset({"float32", "int8"})
    requires = (("tensorflow", "tflite"),)
    tools = ("tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos",)

    @classmethod
    def refuses_options(cls, target):
        return _one_shape(target)

    @classmethod
    def judge(cls, domain, op, target, recipe, facts):
        from .preflight import judge_tflite_converter

        return judge_tflite_converter(domain, op, target, recipe, facts)

    @classmethod
    def preflight_notes(cls, facts, target, recipe):
        from .preflight import tflite_converter_notes

        return tflite_converter_notes(facts, recipe)

    def convert(self, artifact, out_dir, ctx):
        tf = import_quietly("tensorflow", "tflite", "The TFLite converter")

        loaded = tf.saved_model.load(str(artifact.path))
        sig = loaded.signatures["serving_default"]
        _, kw = sig.structured_input_signature
        inputs = {name: spec.dtype.as_numpy_dtype for name, spec in kw.items()}
        del loaded
        make = lambda: tf.lite.TFLiteConverter.from_saved_model(str(artifact.path))  # noqa: E731
        if ctx.recipe is None:
            ctx.recipe = _none_recipe()
        return _tflite_convert(make, out_dir, ctx, self.name(), inputs)


class TfliteFromKeras(Converter):
    src, dst = "keras", "tflite"
    recipes = frozenset({"none", "fp16", "int8-dynamic", "int8-static"})
    io_dtypes = frozenset({"float32", "int8"})
    requires = (("tensorflow", "tflite"),)
    tools = ("tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos", "keras")

    @classmethod
    def refuses_options(cls, target):
        return _one_shape(target)

    def convert(self, artifact, out_dir, ctx):
        tf = import_quietly("tensorflow", "tflite", "The TFLite converter")

        model = artifact.obj
        inputs = {t.name.split(":")[0]: np.dtype(t.dtype if isinstance(t.dtype, str) else t.dtype.name)
                  for t in model.inputs}
        make = lambda: tf.lite.TFLiteConverter.from_keras_model(model)  # noqa: E731
        if ctx.recipe is None:
            ctx.recipe = _none_recipe()
        return _tflite_convert(make, out_dir, ctx, self.name(), inputs)


def _one_shape(target):
    if target.option("buckets") is not None:
        return "makes one shape (shape buckets come from litert-torch, one signature per bucket)"
    return None


def _none_recipe():
    from ...core.specs import get_recipe

    return get_recipe("none")
