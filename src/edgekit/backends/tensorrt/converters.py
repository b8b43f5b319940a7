"""onnx -> trt-build (here) -> tensorrt (on the device).

``TrtBuildFromOnnx`` makes what the device builds from: the ONNX model (for a static int8 target the
explicitly quantized QDQ model from the onnx backend's static int8, symmetric as TensorRT takes it,
so no calibrator runs on the device) and ``build.json`` (precision, trtexec flags, input shapes with
the dynamic dimensions fixed, outputs). ``TensorrtFromTrtBuild`` runs on the device: it pushes the
package, builds the engine there with ``trtexec`` (or TensorRT's Python API when there is no
trtexec) and pulls it back. Its cached output is keyed by the device's GPU, TensorRT and CUDA
versions (``device.py``): an engine is valid for those only.
"""
from __future__ import annotations

import json
import posixpath
import shutil
from pathlib import Path

from ...core.errors import ConversionError
from ...core.graph import Converter, ConvertContext
from .device import BUILD_TIMEOUT_S, build_remote, facts_of, require_tensorrt

BUILD_FILE = "build.json"
ENGINE_FILE = "engine.json"
PRECISION = {"none": "fp32", "fp16": "fp16", "int8-static": "int8"}


def trtexec_flags(precision: str, options: dict) -> list[str]:
    """trtexec's build flags for a precision and the target's options."""
    if options.get("strongly_typed"):
        flags = ["--stronglyTyped"]  # the ONNX model's types (and its Q/DQ) decide every layer's precision
    else:
        flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
    if options.get("workspace_mb"):
        flags.append(f"--memPoolSize=workspace:{int(options['workspace_mb'])}M")
    if options.get("opt_level") is not None:
        flags.append(f"--builderOptimizationLevel={int(options['opt_level'])}")
    return flags


def _io(model, source) -> tuple[list[dict], list[str]]:
    """The ONNX graph's inputs at fixed shapes (a dynamic dimension takes the source's fixed one) and
    its output names."""
    from onnx import TensorProto, helper

    inits = {i.name for i in model.graph.initializer}
    fixed = {s.name: s.fixed_shape() for s in source.inputs}
    ordered = [s.fixed_shape() for s in source.inputs]
    inputs = []
    for k, v in enumerate([v for v in model.graph.input if v.name not in inits]):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        guess = fixed.get(v.name) or (ordered[k] if k < len(ordered) else None)
        shape = [d if d is not None else (int(guess[i]) if guess and i < len(guess) else 1) for i, d in enumerate(dims)]
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type != TensorProto.UNDEFINED else "float32"
        inputs.append({"name": v.name, "shape": shape, "dtype": dtype, "dynamic": None in dims})
    return inputs, [o.name for o in model.graph.output]


class TrtBuildFromOnnx(Converter):
    """The build package, made on this host."""

    src, dst = "onnx", "trt-build"
    cost = 1.0
    requires = (("onnx", "onnx"), ("onnxruntime", "onnx"))
    tools = ("onnx", "onnxruntime")
    target_options = ("workspace_mb", "opt_level", "strongly_typed")

    @classmethod
    def key_material(cls, ctx):
        # not the route's last edge, yet it applies the target's precision (and calibrates for int8)
        recipe = ctx.target.recipe_spec
        material = {"recipe": repr(recipe)}
        if recipe.needs_calibration and ctx.data is not None:
            material["calib"] = ctx.data.calib_digest()
        return material

    def convert(self, artifact, out_dir, ctx):
        import onnx

        recipe = ctx.target.recipe_spec
        if recipe.kind not in PRECISION:
            raise ConversionError(self.name(), f"TensorRT builds fp32, fp16 or static int8 engines, not "
                                  f"recipe kind '{recipe.kind}'.")
        precision = PRECISION[recipe.kind]
        package = out_dir / "model.trtbuild"
        package.mkdir()
        src = Path(artifact.path)
        if precision == "int8":
            src = self._quantized(artifact, out_dir / "int8", ctx, recipe)
        model = onnx.load(str(src))  # external data (a .onnx.data file) is read in: one self-contained file
        onnx.save(model, str(package / "model.onnx"))
        inputs, outputs = _io(model, ctx.source)
        options = {k: ctx.target.option(k) for k in self.target_options if ctx.target.option(k) is not None}
        build = {"format": 1, "precision": precision, "inputs": inputs, "outputs": outputs,
                 "trtexec_flags": trtexec_flags(precision, options), **options}
        (package / BUILD_FILE).write_text(json.dumps(build, indent=2) + "\n")
        shutil.rmtree(out_dir / "int8", ignore_errors=True)
        ctx.notes.append(f"{precision} build settings for the device: trtexec {' '.join(build['trtexec_flags'])}".rstrip()
                         + "; inputs " + ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))}" for i in inputs))
        return package

    def _quantized(self, artifact, work: Path, ctx, recipe) -> Path:
        """The explicitly quantized (QDQ) model, from the onnx backend's static int8."""
        from ..onnx.transforms import QuantizedOnnxFromOnnx

        work.mkdir()
        sub = ConvertContext(ctx.target, recipe, ctx.source, ctx.data, device=ctx.device)
        path = QuantizedOnnxFromOnnx().convert(artifact, work, sub)
        ctx.notes += [f"QDQ (explicit quantization) made here: {n}" for n in sub.notes]
        return Path(path)


class TensorrtFromTrtBuild(Converter):
    """The engine, built on the device that will run it."""

    src, dst = "trt-build", "tensorrt"
    cost = 1.0
    on_device = True
    recipes = frozenset(PRECISION)
    calibration_methods = frozenset({"minmax", "entropy", "percentile"})  # the QDQ model's quantizer's
    calibration_settings = frozenset({"samples", "per_channel", "symmetric"})
    revision = 1

    @classmethod
    def refuses(cls, recipe, target):
        if recipe.kind == "int8-static" and not recipe.calibration.symmetric:
            return "takes symmetric int8 only (TensorRT's quantization has zero point 0): set calibration symmetric"
        return super().refuses(recipe, target)

    @classmethod
    def key_material(cls, ctx):
        facts = facts_of(ctx.device)  # an engine is valid for one GPU, TensorRT and CUDA
        return {k: facts.get(k) for k in ("gpu", "tensorrt", "cuda", "driver", "l4t")} | {
            "trtexec": bool(facts.get("trtexec"))}

    def convert(self, artifact, out_dir, ctx):
        device = ctx.device
        package = Path(artifact.path)
        build = json.loads((package / BUILD_FILE).read_text())
        remote = device.push(package, f"edgekit-{artifact.digest[:16]}.trtbuild")
        facts = require_tensorrt(device, self.name())
        engine_remote = posixpath.join(device.workdir(), f"edgekit-{artifact.digest[:16]}.engine")
        how = build_remote(self.name(), device, facts, remote, engine_remote, build, timeout=BUILD_TIMEOUT_S)
        folder = out_dir / "model.trt"
        folder.mkdir()
        device.pull(engine_remote, folder / "model.engine")
        meta = {"format": 1, "engine": "model.engine", "precision": build["precision"], "inputs": build["inputs"],
                "outputs": build["outputs"], "built_on": {"device": device.name, **{k: v for k, v in facts.items()
                                                                                   if k != "trtexec"}},
                "build": how}
        (folder / ENGINE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        ctx.notes.append(f"engine built on {device.name} ({facts.get('gpu') or 'GPU not named'}, TensorRT "
                         f"{facts.get('tensorrt') or how.get('tensorrt') or '?'}, CUDA {facts.get('cuda') or '?'}) "
                         f"with {how['how']} in {how.get('build_s', 0):.1f} s")
        return folder
