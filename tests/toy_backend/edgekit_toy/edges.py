"""Edges of the toy backend: ONNX (a Gemm or MatMul+Add) -> toyjson, on the host or on the device."""
import json

import numpy as np

from edgekit.core.errors import ConversionError
from edgekit.core.graph import Converter


def _linear(path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    w = next((inits[i] for n in model.graph.node for i in n.input if n.op_type in ("Gemm", "MatMul") and i in inits),
             None)
    b = next((inits[i] for n in model.graph.node for i in n.input if n.op_type in ("Gemm", "Add") and i in inits
              and inits[i].ndim == 1), None)
    if w is None or set(ops) - {"Gemm", "MatMul", "Add"}:
        raise ConversionError("ToyjsonFromOnnx", f"only linear models convert (found {', '.join(ops)}).")
    gemm = next((n for n in model.graph.node if n.op_type == "Gemm"), None)
    if gemm is not None and any(a.name == "transB" and a.i for a in gemm.attribute):
        w = w.T
    return model, w, (b if b is not None else np.zeros(w.shape[1], np.float32))


class ToyjsonFromOnnx(Converter):
    src, dst = "onnx", "toyjson"
    recipes = frozenset({"none", "fp16"})
    requires = (("onnx", "onnx"),)
    tools = ("onnx",)

    def convert(self, artifact, out_dir, ctx):
        model, w, b = _linear(artifact.path)
        if ctx.recipe is not None and ctx.recipe.kind == "fp16":
            w, b = w.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
        decimals = ctx.target.option("decimals")
        if decimals is not None:
            w, b = np.round(w, decimals), np.round(b, decimals)
        path = out_dir / "model.toyjson"
        path.write_text(json.dumps({"input": model.graph.input[0].name, "output": model.graph.output[0].name,
                                    "w": w.tolist(), "b": b.tolist()}))
        ctx.notes.append(f"toy: {w.shape[0]}x{w.shape[1]} linear layer" + (f", {decimals} decimals" if decimals else ""))
        return path


class ToyjsonBuiltOnDevice(Converter):
    """A step that must run where the artifact will run (as an engine builder must): it asks the
    device for its machine type and stamps it into the artifact."""

    src, dst = "toyjson", "toyjson"
    recipes = frozenset({"int8-dynamic"})
    on_device = True

    def convert(self, artifact, out_dir, ctx):
        code, out, err = ctx.device.run(["{python}", "-c", "import platform; print(platform.machine())"])
        if code != 0:
            raise ConversionError(self.name(), f"the device could not build: {err.strip()[:100]}")
        data = json.loads(artifact.path.read_text())
        w = np.asarray(data["w"], np.float32)
        scale = float(np.abs(w).max()) / 127 or 1.0
        data.update(w=(np.round(w / scale) * scale).tolist(), built_for=out.strip(), device=ctx.device.name)
        path = out_dir / "model.toyjson"
        path.write_text(json.dumps(data))
        ctx.notes.append(f"built on {ctx.device.name} ({out.strip()})")
        return path
