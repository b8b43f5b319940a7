"""TensorFlow-side edges: ONNX -> SavedModel (onnx2tf), SavedModel/Keras -> TFLite (the TFLite
converter, which applies fp16, dynamic-range int8 and full-integer int8 with calibration)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from ...core.lazy import import_quietly, native_output_silenced
from ...runner.worker import lookup_input
from ..onnx.ops import check_standard_ops, op_types

ONNX2TF_TIMEOUT_S = 1800
# ONNX ops whose TF lowering has no TFLite builtin kernel (Erf: the GELU of BERT-style models)
PSEUDO_OPS = {"Erf"}


class SavedModelFromOnnx(Converter):
    """onnx2tf in a child process (it is heavy, chatty, and may crash). NCHW inputs are kept NCHW
    so that the artifact takes exactly the source model's inputs."""

    src, dst = "onnx", "savedmodel"
    cost = 2.0
    requires = (("onnx2tf", "tflite"), ("tensorflow", "tflite"), ("onnx_graphsurgeon", "tflite"))
    tools = ("onnx2tf", "tensorflow")
    revision = 2

    def convert(self, artifact, out_dir, ctx):
        import onnx

        check_standard_ops(artifact.path, self.name())
        ops_dir = Path(importlib.util.find_spec("onnx2tf").origin).parent / "ops"  # no TF import just to look
        for domain, op in op_types(artifact.path):
            if domain in ("", "ai.onnx") and not (ops_dir / f"{op}.py").exists():
                raise UnsupportedOperator(self.name(), op, "onnx2tf has no converter for it")
        work = out_dir / "work"
        work.mkdir()
        onnx_copy = work / "model.onnx"  # onnx2tf's onnxsim step overwrites its input in place
        shutil.copyfile(artifact.path, onnx_copy)
        model = onnx.load(str(onnx_copy), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        keep = [i.name for i in model.graph.input if i.name not in inits
                and len(i.type.tensor_type.shape.dim) >= 3 and i.type.tensor_type.elem_type in (1, 10)]
        tf_dir = work / "tf"
        argv = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_copy), "-o", str(tf_dir), "-osd", "-coion", "-n"]
        if keep:
            argv += ["-k", *keep]
        pseudo = sorted(PSEUDO_OPS & {op for _, op in op_types(artifact.path)})
        if pseudo:  # no TFLite builtin kernel: onnx2tf rewrites them into builtin math
            argv += ["-rtpo", *pseudo]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        try:
            proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=ONNX2TF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(self.name(), f"onnx2tf did not finish within {ONNX2TF_TIMEOUT_S} s.") from None
        saved = tf_dir / "saved_model.pb"
        if proc.returncode != 0 or not saved.exists():
            raise ConversionError(self.name(), "onnx2tf failed: " + _last_error(proc.stdout + proc.stderr))
        final = out_dir / "saved_model"
        final.mkdir()
        for item in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            if (tf_dir / item).exists():
                shutil.move(str(tf_dir / item), str(final / item))
        shutil.rmtree(work, ignore_errors=True)
        ctx.notes.append("onnx2tf" + (f", kept NCHW inputs: {', '.join(keep)}" if keep else "")
                         + (f", pseudo ops for {', '.join(pseudo)}" if pseudo else ""))
        return final


def _last_error(text: str) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:300]
    return (lines[-1] if lines else "no output")[:300]


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
        ctx.notes.append(f"full integer: int8 kernels throughout, {target.io_dtype} I/O, "
                         f"{min(ctx.data.n_calib, recipe.calibration.samples)} calibration samples (min/max)")
    return path


def _representative(ctx, signature_inputs: dict):
    data = ctx.data.calib
    n = min(ctx.data.n_calib, ctx.recipe.calibration.samples)

    def pick(name):
        try:
            return lookup_input(data, name)
        except KeyError as e:
            raise ConversionError("calibration", f"no calibration array for input '{name}' (have {sorted(data)}).") \
                from e

    def gen():
        for i in range(n):
            yield {name: pick(name)[i:i + 1].astype(dtype) for name, dtype in signature_inputs.items()}

    return gen


class TfliteFromSavedModel(Converter):
    src, dst = "savedmodel", "tflite"
    recipes = frozenset({"none", "fp16", "int8-dynamic", "int8-static"})
    io_dtypes = frozenset({"float32", "int8"})
    requires = (("tensorflow", "tflite"),)
    tools = ("tensorflow",)

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
    tools = ("tensorflow", "keras")

    def convert(self, artifact, out_dir, ctx):
        tf = import_quietly("tensorflow", "tflite", "The TFLite converter")

        model = artifact.obj
        inputs = {t.name.split(":")[0]: np.dtype(t.dtype if isinstance(t.dtype, str) else t.dtype.name)
                  for t in model.inputs}
        make = lambda: tf.lite.TFLiteConverter.from_keras_model(model)  # noqa: E731
        if ctx.recipe is None:
            ctx.recipe = _none_recipe()
        return _tflite_convert(make, out_dir, ctx, self.name(), inputs)


def _none_recipe():
    from ...core.specs import get_recipe

    return get_recipe("none")
