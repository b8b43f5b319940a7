"""torch -> ONNX: the dynamo exporter (``torch.export`` based), and the TorchScript tracer as a
fallback edge for modules the dynamo exporter cannot capture."""
from __future__ import annotations

import re
from pathlib import Path

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Artifact, ConvertContext, Converter

OPSET = 18


def _quiet():
    """The frameworks log and warn at length: kept off the terminal (a real failure still raises)."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")


def _export(artifact: Artifact, out_dir: Path, ctx: ConvertContext, edge: str, dynamo: bool) -> Path:
    import torch

    src = ctx.source
    module = artifact.obj
    names = [s.name for s in src.inputs]
    args = tuple(torch.from_numpy(src.example[n]) for n in names)
    path = out_dir / "model.onnx"
    kwargs = dict(input_names=names, output_names=list(src.outputs), opset_version=OPSET)
    dynamic = {s.name: {i: (d if isinstance(d, str) else f"{s.name}_dim{i}") for i, d in enumerate(s.shape)
                        if not isinstance(d, int)} for s in src.inputs}
    dynamic = {k: v for k, v in dynamic.items() if v}
    try:
        with _quiet():
            if dynamo:
                if dynamic:
                    kwargs["dynamic_shapes"] = {n: {i: torch.export.Dim.AUTO for i in dynamic.get(n, {})} or None
                                                for n in names}
                torch.onnx.export(module, args, str(path), dynamo=True, external_data=False, verbose=False,
                                  optimize=True, **kwargs)
            else:
                if dynamic:
                    kwargs["dynamic_axes"] = dynamic
                torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)
    except Exception as e:
        text = str(e)
        m = re.search(r"(aten::[A-Za-z0-9_.]+|aten\.[A-Za-z0-9_.]+)", text)
        if m and re.search(r"[Uu]nsupported|not supported|No decomposition|no symbolic", text):
            raise UnsupportedOperator(edge, m.group(1)) from None
        first = next((ln for ln in text.strip().splitlines() if ln.strip()), type(e).__name__)
        raise ConversionError(edge, f"torch.onnx.export failed: {first[:300]}") from None
    ctx.notes.append(f"opset {OPSET}, {'dynamo' if dynamo else 'torchscript'} exporter")
    return path


class OnnxFromTorch(Converter):
    src, dst = "torch", "onnx"
    cost = 1.0
    requires = (("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnx"))
    tools = ("torch", "onnx", "onnxscript")

    def convert(self, artifact, out_dir, ctx):
        return _export(artifact, out_dir, ctx, self.name(), dynamo=True)


class OnnxFromTorchTrace(Converter):
    """The legacy TorchScript-tracing exporter: slower to maintain, but captures some modules
    the dynamo exporter cannot. Only tried when the cheaper route fails."""

    src, dst = "torch", "onnx"
    cost = 1.5
    requires = (("torch", "torch"), ("onnx", "onnx"))
    tools = ("torch", "onnx")

    def convert(self, artifact, out_dir, ctx):
        return _export(artifact, out_dir, ctx, self.name(), dynamo=False)
