"""torch -> ExecuTorch (.pte): ``torch.export`` at the source's input shapes, then
``to_edge_transform_and_lower`` with the XNNPACK partitioner (the delegate takes every subgraph it
supports; the rest runs on ExecuTorch's portable kernels), then ``to_executorch``. Static int8 is
quantized first with the XNNPACK quantizer through PT2E, calibrated on the user's data
(``quantize.py``). ONNX sources arrive through the ONNX -> PyTorch edge (onnx2torch).

The program carries the source's signature (input names, shapes, dtypes; output names) as a
constant method, ``edgekit_signature``, returning its JSON as a uint8 tensor: a ``.pte`` keeps no
tensor names otherwise.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from .stack import EXTRA, import_exir

SIGNATURE_METHOD = "edgekit_signature"


def export(module, src, edge: str):
    """``torch.export`` of the module at the source's example inputs: positionally, or by name when
    its forward takes the input names (onnx2torch's modules)."""
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in src.examples().values())
    with _quiet(), torch.no_grad():
        try:
            return torch.export.export(module, args)
        except Exception as e:  # noqa: BLE001  torch.export fails with many exception types
            first = e
        try:  # a module whose forward takes the inputs by name (a program onnx2torch exported by name)
            return torch.export.export(module, (), dict(zip([s.name for s in src.inputs], args)))
        except Exception:  # noqa: BLE001
            pass
    raise ConversionError(edge, f"torch.export failed: {_first(first)}",
                          "The model keeps data-dependent control flow or shapes; rewrite that part.")


def signature(src):
    """The source's signature as JSON, in a uint8 tensor: every ExecuTorch runtime returns tensors from
    a constant method (the torch-free executorch-numpy-runtime returns no strings)."""
    import torch

    text = json.dumps({"inputs": [{"name": s.name, "shape": list(s.fixed_shape()), "dtype": s.dtype}
                                  for s in src.inputs], "outputs": list(src.outputs)})
    return torch.tensor(list(text.encode()), dtype=torch.uint8)


def delegation(program) -> tuple[int, Counter]:
    """(XNNPACK-delegated subgraphs, operators left to ExecuTorch's own kernels) of a lowered program."""
    delegated, rest = 0, Counter()
    for node in program.exported_program().graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name == "executorch_call_delegate":
            delegated += 1
        elif name != "getitem":
            rest[name] += 1
    return delegated, rest


class PteFromTorch(Converter):
    src, dst = "torch", "pte"
    cost = 1.0
    recipes = frozenset({"none", "int8-static"})
    requires = (("torch", "torch"), ("executorch", EXTRA))
    tools = ("executorch", "torch", "torchao")
    revision = 2  # the signature as a uint8 tensor

    def convert(self, artifact, out_dir, ctx):
        src = ctx.source
        exir = import_exir()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        ep = export(artifact.obj, src, self.name())
        recipe = ctx.recipe
        if recipe is not None and recipe.kind == "int8-static":
            from .quantize import quantize

            ep = quantize(ep, src, ctx, self.name())
        try:
            with _quiet():
                edge = exir.to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                                        constant_methods={SIGNATURE_METHOD: signature(src)})
                delegated, rest = delegation(edge)
                program = edge.to_executorch()
        except Exception as e:  # noqa: BLE001
            raise _lowering_error(self.name(), e) from None
        path = out_dir / "model.pte"
        path.write_bytes(program.buffer)
        left = ", ".join(f"{op} x{n}" for op, n in rest.most_common(4)) + (", ..." if len(rest) > 4 else "")
        ctx.notes.append(f"torch.export + XNNPACK: {delegated} delegated subgraph(s)"
                         + (f"; on ExecuTorch's own kernels: {left}" if rest else "; nothing left outside it"))
        return path


def _lowering_error(edge: str, e: Exception) -> ConversionError:
    text = str(e)
    for marker in ("Missing out variants:", "not in the core ATen opset", "is not Aten Canonical"):
        if marker in text:
            op = text.split(marker, 1)[1].strip().strip("{}[]' ").split(",")[0].strip("{}[]' ") or "?"
            return UnsupportedOperator(edge, op, "ExecuTorch has no kernel for it")
    return ConversionError(edge, f"lowering to ExecuTorch failed: {type(e).__name__}: {_first(e)}")


def _first(e) -> str:
    return next((ln.strip() for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)[:300]


def _quiet():
    """The frameworks log and warn at length: kept off the terminal (a real failure still raises)."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("torch.export", "torch._dynamo", "executorch", "torchao")
