"""Relax frontends: ONNX graphs and ``torch.export`` programs imported into Relax (TVM's graph IR).

Both edges write the imported module, weights bound as constants, as ``model.relax`` (TVM's JSON
serialization). From a torch module the planner tries torch -> relax (``torch.export``, then Relax's
ExportedProgram importer) before torch -> onnx -> relax, and falls back from one to the other; an
ONNX source may also go through onnx2torch (onnx -> torch -> relax). An operator a frontend has no
converter for fails at once with :class:`UnsupportedOperator`, naming the operator and the node of
the source model that uses it (the frontends themselves would list the op types alone).
"""
from __future__ import annotations

import functools
import os
import re
import sys

import numpy as np

from ...core.errors import ConversionError, MissingExtra, UnsupportedOperator
from ...core.graph import Converter

TVM = (("tvm", "tvm"),)
TOOLS = ("apache-tvm", "apache-tvm-ffi")


def import_tvm():
    """``import tvm`` as edgekit uses it: never dragging torch's C extension build in (tvm_ffi
    would build one at import time), and saying which extra installs it."""
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    try:
        import tvm
    except ImportError as e:
        if "tvm" not in str(e) and "typing_extensions" not in str(e):
            raise
        raise MissingExtra("tvm", "tvm", "Apache TVM") from None
    return tvm


def light_tensor_intrin(machine: str | None = None) -> None:
    """Register only the CPU tensor intrinsics MetaSchedule needs. ``import tvm.s_tir.tensor_intrin``
    also builds every CUDA/ROCm/Hexagon intrinsic: minutes of TVMScript parsing, in this process and
    in every builder worker. With the package stood in first, only the CPU modules load (~1 s)."""
    import importlib
    import platform
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    import tvm.s_tir as s_tir

    pkg = types.ModuleType(name)
    pkg.__path__ = [os.path.join(os.path.dirname(s_tir.__file__), "tensor_intrin")]
    pkg.__package__ = name
    sys.modules[name] = pkg
    s_tir.tensor_intrin = pkg
    machine = machine or platform.machine()
    importlib.import_module(f"{name}.{'arm_cpu' if machine in ('aarch64', 'arm64') else 'x86'}")


def save_relax(mod, out_dir, inputs, outputs) -> "os.PathLike":
    """Write the module (``model.relax``) with the source's signature in its attributes."""
    import json

    tvm = import_tvm()
    sig = json.dumps({"inputs": [{"name": s.name, "shape": list(s.fixed_shape()), "dtype": s.dtype} for s in inputs],
                      "outputs": list(outputs)})
    mod = mod.with_attr("edgekit_signature", sig)
    path = out_dir / "model.relax"
    path.write_text(tvm.ir.save_json(mod))
    return path


def _check_arity(edge, mod, inputs):
    params = mod["main"].params
    if len(params) != len(inputs):
        raise ConversionError(edge, f"the Relax module takes {len(params)} inputs, the source {len(inputs)}.")


# ---- ONNX ----------------------------------------------------------------------------------------

def _onnx_nodes(graph, where=""):
    """Every node of an ONNX graph and of its subgraphs (If/Loop/Scan bodies), with a path."""
    for node in graph.node:
        yield node, where
        for attr in node.attribute:
            subs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in subs:
                yield from _onnx_nodes(sub, f"{where}{node.name or node.op_type}/")


@functools.lru_cache(maxsize=None)
def _onnx_ops() -> frozenset | None:
    """The op types Relax's ONNX frontend converts (None: TVM is not installed)."""
    try:
        import_tvm()
        from tvm.relax.frontend.onnx import onnx_frontend
    except (ImportError, MissingExtra):
        return None
    return frozenset(onnx_frontend._get_convert_map()) | {"If", "Constant"}


def onnx_unsupported(model) -> list[tuple[str, str]]:
    """[(op type, node name)] of the nodes Relax's ONNX frontend has no converter for."""
    known = _onnx_ops() or frozenset()
    out = []
    for node, where in _onnx_nodes(model.graph):
        if node.domain not in ("", "ai.onnx") or node.op_type not in known:
            out.append((node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
                        where + (node.name or f"<unnamed {node.op_type}>")))
    return out


class RelaxFromOnnx(Converter):
    src, dst = "onnx", "relax"
    cost = 1.0
    requires = TVM + (("onnx", "onnx"),)
    tools = TOOLS + ("onnx",)

    @classmethod
    def judge(cls, domain, op, target, recipe, facts):
        known = _onnx_ops()
        if known is None:
            return []
        if domain not in ("", "ai.onnx"):
            return [("fail", f"Relax's ONNX frontend reads the standard domain only, not '{domain}'")]
        if op in known:
            return [("ok", "Relax's ONNX frontend converts it")]
        return [("fail", "Relax's ONNX frontend has no converter for it")]

    def convert(self, artifact, out_dir, ctx):
        import onnx

        import_tvm()
        from tvm.relax.frontend.onnx import from_onnx

        model = onnx.load(str(artifact.path))
        bad = onnx_unsupported(model)
        if bad:
            op, node = bad[0]
            more = len({o for o, _ in bad}) - 1
            raise UnsupportedOperator(self.name(), op, "Relax's ONNX frontend has no converter for it"
                                      + (f"; {more} other operator type(s) neither" if more else ""), node=node)
        initializers = {i.name for i in model.graph.initializer}
        graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
        specs = {s.name: s for s in ctx.source.inputs}
        missing = [n for n in graph_inputs if n not in specs]
        if missing:
            raise ConversionError(self.name(), f"the ONNX graph's input '{missing[0]}' is not an input of the source.")
        ordered = [specs[n] for n in graph_inputs]
        try:
            with _quiet():
                mod = from_onnx(model, shape_dict={s.name: list(s.fixed_shape()) for s in ordered},
                                dtype_dict={s.name: s.dtype for s in ordered}, keep_params_in_input=False)
        except Exception as e:  # noqa: BLE001  the frontend fails with many exception types
            raise _frontend_error(self.name(), e, model=model) from None
        _check_arity(self.name(), mod, ordered)
        ctx.notes.append(f"Relax ONNX frontend (opset {_opset(model)}), input shapes fixed at "
                         + ", ".join(f"{s.name}:{'x'.join(map(str, s.fixed_shape()))}" for s in ordered))
        return save_relax(mod, out_dir, ordered, ctx.source.outputs)


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# ---- torch.export --------------------------------------------------------------------------------

def _examples(source) -> dict:
    """The source's example inputs, else inputs of its declared (fixed) shapes."""
    ex = dict(source.example or {})
    rng = np.random.default_rng(0)
    for s in source.inputs:
        if s.name not in ex:
            dtype = np.dtype(s.dtype)
            shape = s.fixed_shape()
            ex[s.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
    return ex


def torch_unsupported(ep) -> list[tuple[str, str]]:
    """[(operator, node)] of an exported program's calls Relax's importer has no converter for."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    known = ExportedProgramImporter().convert_map
    out = []
    for node in ep.graph.nodes:
        if node.op == "call_function" and getattr(node.target, "__name__", str(node.target)) not in known:
            stack = node.meta.get("nn_module_stack") or {}
            module = next(reversed(stack.values()))[0] if stack else ""
            out.append((str(node.target), node.name + (f" in {module}" if module else "")))
    return out


class RelaxFromTorch(Converter):
    src, dst = "torch", "relax"
    cost = 1.0
    requires = TVM + (("torch", "torch"),)
    tools = TOOLS + ("torch",)

    def convert(self, artifact, out_dir, ctx):
        import torch

        import_tvm()
        from tvm.relax.frontend.torch import from_exported_program

        src = ctx.source
        ex = _examples(src)
        args = tuple(torch.from_numpy(np.ascontiguousarray(ex[s.name])) for s in src.inputs)
        module = artifact.obj
        try:
            with _quiet(), torch.no_grad():
                try:
                    ep = torch.export.export(module, args)
                except TypeError:  # a module whose forward takes the inputs by name (onnx2torch's)
                    ep = torch.export.export(module, (), dict(zip([s.name for s in src.inputs], args)))
                ep = ep.run_decompositions()
        except Exception as e:  # noqa: BLE001
            raise ConversionError(self.name(), f"torch.export failed: {_first(e)}",
                                  "The ONNX route (torch -> onnx -> relax) may still convert it.") from None
        bad = torch_unsupported(ep)
        if bad:
            op, node = bad[0]
            raise UnsupportedOperator(self.name(), op, "Relax's torch.export importer has no converter for it",
                                      node=node)
        try:
            with _quiet():
                mod = from_exported_program(ep, keep_params_as_input=False, unwrap_unit_return_tuple=True,
                                            run_ep_decomposition=False)
        except Exception as e:  # noqa: BLE001
            raise _frontend_error(self.name(), e, ep=ep) from None
        _check_arity(self.name(), mod, src.inputs)
        ctx.notes.append("torch.export + Relax ExportedProgram importer, input shapes "
                         + ", ".join(f"{s.name}:{'x'.join(map(str, s.fixed_shape()))}" for s in src.inputs))
        return save_relax(mod, out_dir, src.inputs, src.outputs)


# ---- errors --------------------------------------------------------------------------------------

def _frontend_error(edge: str, e: Exception, model=None, ep=None) -> ConversionError:
    """A frontend failure as one sentence; "not supported" ones name the operator (and its node)."""
    text = str(e)
    m = re.search(r"operators are not supported for frontend ONNX: ([\w., ]+)", text) or \
        re.search(r"Unsupported function types \[([^\]]+)\]", text)
    if m:
        op = m.group(1).split(",")[0].strip().strip("'\"")
        node = None
        if model is not None:
            node = next((n.name for n, _ in _onnx_nodes(model.graph) if n.op_type == op), None)
        elif ep is not None:
            node = next((n.name for n in ep.graph.nodes if getattr(n.target, "__name__", "") == op), None)
        return UnsupportedOperator(edge, op, "the Relax frontend has no converter for it", node=node)
    if isinstance(e, (NotImplementedError, AssertionError)) or "not supported" in text.lower():
        return ConversionError(edge, f"the Relax frontend cannot import it: {_first(e)}")
    return ConversionError(edge, f"the Relax frontend failed: {type(e).__name__}: {_first(e)}")


def _first(e) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    # TVM's errors end with the message after a C++ backtrace: the last line is the one to show
    text = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else type(e).__name__)
    if text.endswith(":") and len(lines) > 1:  # "Compilation error:" then the compiler's own words
        text += " " + next((ln for ln in lines[1:] if "error" in ln.lower() or "cannot" in ln.lower()), lines[1])
    return text[:300]


def _quiet():
    """The frameworks log and warn at length: kept off the terminal (a real failure still raises)."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("torch.export", "torch._dynamo", "tvm")
