"""torch -> Core ML (``.mlpackage``, an ``mlprogram``): ``torch.export`` at the source's input shapes
(the ExecuTorch backend's export, which also takes modules whose forward wants the inputs by name),
decomposed to core ATen, then ``coremltools.convert``; a module that ``torch.export`` or the converter
cannot take is traced (``torch.jit.trace``) and converted from TorchScript instead. ONNX sources arrive
through the ONNX -> PyTorch edge.

Recipes: ``none`` (fp32 compute), ``fp16`` (fp16 compute: Core ML's own default), ``int8-dynamic``
(linear int8 weights, per channel, ``coremltools.optimize.coreml.linear_quantize_weights``; fp16
compute), ``palettize`` (k-means look-up tables of ``bits`` bits, ``palettize_weights``; fp16 compute),
``int8-static`` (W8A8: int8 weights and int8 activations calibrated on the user's data through PT2E,
coremltools turning the quantize/dequantize pairs into Core ML's). Inputs and outputs stay float32
(int64 inputs become int32: Core ML has no int64 tensors).

The package carries the source's signature and the compute units to load it with in its user metadata
(``edgekit.signature``, ``edgekit.compute_units``).
"""
from __future__ import annotations

import json

import numpy as np

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from .stack import EXTRA, import_coremltools, quiet

DEFAULT_TARGET = "iOS17"  # quantize/dequantize ops (W8A8) need it; macOS 14, iOS 17 and later load it
DEFAULT_BITS = 6
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
PRECISION = {"none": "FLOAT32", "fp16": "FLOAT16", "int8-dynamic": "FLOAT16", "palettize": "FLOAT16",
             "int8-static": "FLOAT16"}


def io_dtype(dtype: str):
    """The numpy dtype a Core ML input takes for a source input of ``dtype``."""
    d = np.dtype(dtype)
    if d.kind in "iub" and d != np.dtype(bool):
        return np.int32
    if d == np.dtype(bool):
        return bool
    return np.float32


def signature_json(src) -> str:
    return json.dumps({"inputs": [{"name": s.name, "shape": list(s.fixed_shape()), "dtype": s.dtype}
                                  for s in src.inputs], "outputs": list(src.outputs)})


def options(ctx, edge: str) -> dict:
    """The target's options, checked: deployment target, palette bits, compute units."""
    target = ctx.target.option("deployment_target", DEFAULT_TARGET)
    bits = int(ctx.target.option("bits", DEFAULT_BITS))
    units = ctx.target.option("compute_units", "all")
    if bits not in (1, 2, 3, 4, 6, 8):
        raise ConversionError(edge, f"option bits = {bits}: Core ML palettes have 1, 2, 3, 4, 6 or 8 bits.",
                              "Example: --option bits=4")
    if units not in COMPUTE_UNITS:
        raise ConversionError(edge, f"option compute_units = '{units}' is not one of {', '.join(COMPUTE_UNITS)}.")
    return {"deployment_target": target, "bits": bits, "compute_units": units}


class MlpackageFromTorch(Converter):
    src, dst = "torch", "mlpackage"
    cost = 1.0
    recipes = frozenset(PRECISION)
    requires = (("torch", "torch"), ("coremltools", EXTRA))
    tools = ("coremltools", "torch", "torchao")
    target_options = ("deployment_target", "bits", "compute_units")
    revision = 2  # no debug-handle file in the package

    def convert(self, artifact, out_dir, ctx):
        import time

        ct = import_coremltools()
        edge, src = self.name(), ctx.source
        kind = ctx.recipe.kind if ctx.recipe is not None else "none"
        opts = options(ctx, edge)
        deploy = getattr(ct.target, opts["deployment_target"], None)
        if deploy is None:
            raise ConversionError(edge, f"option deployment_target = '{opts['deployment_target']}' is no Core ML "
                                  "deployment target.", "Examples: iOS17, macOS14, iOS18.")
        t0 = time.perf_counter()
        mlmodel, how = self._convert(ct, artifact.obj, src, ctx, kind, deploy)
        seconds = time.perf_counter() - t0
        compressed = ""
        if kind in ("int8-dynamic", "palettize"):
            mlmodel, compressed = _compress(ct, mlmodel, kind, opts["bits"], edge)
        mlmodel.user_defined_metadata["edgekit.signature"] = signature_json(src)
        mlmodel.user_defined_metadata["edgekit.compute_units"] = opts["compute_units"]
        mlmodel.user_defined_metadata["edgekit.target"] = ctx.target.name
        path = out_dir / "model.mlpackage"
        with quiet():
            mlmodel.save(str(path))
        # written beside the model when ExecuTorch is importable; no part of the package (its Manifest.json
        # names only the model and its weights): 20 KB of the digits CNN's 64
        (path / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
        ctx.notes.append(f"coremltools {ct.__version__}: {how} -> mlprogram for {opts['deployment_target']}, "
                         f"{PRECISION[kind].lower().replace('float', 'fp')} compute ({seconds:.1f} s)"
                         + (f"; {compressed}" if compressed else ""))
        return path

    def _convert(self, ct, module, src, ctx, kind: str, deploy):
        """(the converted MLModel, how it got there)."""
        from ..executorch.converters import export

        edge = self.name()
        precision = getattr(ct.precision, PRECISION[kind])
        inputs = [ct.TensorType(name=s.name, shape=s.fixed_shape(), dtype=io_dtype(s.dtype)) for s in src.inputs]
        first = None
        try:
            ep = export(module, src, edge)
            if kind == "int8-static":
                from ..executorch.quantize import quantize

                ep = quantize(ep, src, ctx, edge, quantizer=_pt2e_quantizer(),
                              label="torchao's XNNPACK-style quantizer")
            with quiet():
                ep = ep.run_decompositions()
            outputs = _outputs(ct, src, _exported_output_dtypes(ep), edge)
            return _ct_convert(ct, ep, inputs, outputs, precision, deploy), "torch.export program"
        except ConversionError as e:
            if kind == "int8-static":  # PT2E needs the exported program: no other way to W8A8 here
                raise
            first = e
        try:  # TorchScript: what coremltools converted before torch.export
            traced = _trace(module, src)
            outputs = _outputs(ct, src, None, edge)
            return _ct_convert(ct, traced, inputs, outputs, precision, deploy), "traced TorchScript module " \
                f"(torch.export route failed: {first.reason[:120]})"
        except ConversionError as e:
            raise ConversionError(edge, f"{first.reason}; traced module: {e.reason}", first.hint) from None


def _pt2e_quantizer():
    """torchao's PT2E quantizer of XNNPACK's kind (symmetric int8 weights per channel, int8 activations
    observed on calibration data): its annotations (conv/linear/matmul with their activations, adds)
    are the W8A8 patterns Core ML runs as int8. coremltools' own CoreMLQuantizer is built on the
    ``torch.ao.quantization.quantizer`` modules, which torch 2.13 no longer has (they moved to torchao)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    class Quantizer(XNNPACKQuantizer):
        """With ExecuTorch's ``set_filter_function`` (nodes it returns False for stay float): what the
        repair (``executorch/repair.py``) uses to keep the layers int8 breaks in float."""

        def __init__(self, *a, **k):
            with warnings.catch_warnings():  # "XNNPACKQuantizer is deprecated!" (its ExecuTorch copy is not)
                warnings.simplefilter("ignore")
                super().__init__(*a, **k)
            self.node_filter = None

        def set_filter_function(self, fn):
            self.node_filter = fn
            return self

        def _annotate_all_static_patterns(self, model, config, filter_fn=None):
            own = self.node_filter
            if own is not None:
                inner = filter_fn
                filter_fn = lambda n: own(n) and (inner is None or inner(n))  # noqa: E731
            return super()._annotate_all_static_patterns(model, config, filter_fn)

    return Quantizer, get_symmetric_quantization_config


def _exported_output_dtypes(ep) -> list:
    out = next(n for n in ep.graph.nodes if n.op == "output")
    vals = out.args[0] if isinstance(out.args[0], (list, tuple)) else [out.args[0]]
    return [getattr(getattr(v, "meta", {}).get("val"), "dtype", None) for v in vals]


def _outputs(ct, src, dtypes, edge: str) -> list:
    if dtypes is not None and len(dtypes) != len(src.outputs):
        raise ConversionError(edge, f"the exported program has {len(dtypes)} outputs; the source names "
                              f"{len(src.outputs)} ({', '.join(src.outputs)}).")
    out = []
    for i, name in enumerate(src.outputs):
        dt = dtypes[i] if dtypes else None
        integer = dt is not None and not dt.is_floating_point and dt.is_signed is not None and str(dt) != "torch.bool"
        out.append(ct.TensorType(name=name, dtype=np.int32 if integer else np.float32))
    return out


def _ct_convert(ct, model, inputs, outputs, precision, deploy):
    from ...core.lazy import native_output_silenced

    try:
        with quiet(), native_output_silenced():  # coremltools draws progress bars on stderr
            return ct.convert(model, convert_to="mlprogram", inputs=inputs, outputs=outputs,
                              compute_precision=precision, minimum_deployment_target=deploy)
    except Exception as e:  # noqa: BLE001  coremltools raises many exception types
        raise _convert_error(e) from None


def _trace(module, src):
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in src.examples().values())
    try:
        with quiet(), torch.no_grad():
            try:
                return torch.jit.trace(module, args, check_trace=False)
            except Exception:  # noqa: BLE001  a forward that takes the inputs by name
                return torch.jit.trace(module, example_kwarg_inputs=dict(zip([s.name for s in src.inputs], args)),
                                       check_trace=False)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(MlpackageFromTorch.name(), f"torch.jit.trace failed: {_first(e)}") from None


def _compress(ct, mlmodel, kind: str, bits: int, edge: str):
    """(the model with compressed weights, what was done). Every weight tensor of 2048 elements or more
    (coremltools' default threshold): smaller ones (biases, norms) stay fp16."""
    import coremltools.optimize.coreml as cto

    from ...core.lazy import native_output_silenced

    skip = _non_finite_consts(mlmodel)  # a mask constant (-inf in fp16) is no weight: it stays as it is
    kept = f"; {len(skip)} non-finite constant(s) left as they are" if skip else ""
    try:
        with quiet(), native_output_silenced():
            if kind == "int8-dynamic":
                cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
                return (cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=cfg,
                                                                                     op_name_configs=skip)),
                        "int8 weights, linear symmetric per channel (linear_quantize_weights)" + kept)
            cfg = cto.OpPalettizerConfig(mode="kmeans", nbits=bits, granularity="per_tensor")
            return (cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=cfg, op_name_configs=skip)),
                    f"{bits}-bit k-means palettes, one per weight tensor (palettize_weights)" + kept)
    except ModuleNotFoundError as e:
        raise ConversionError(edge, f"coremltools' {kind} needs '{e.name}'.",
                              "Install it with: pip install 'edgekit[coreml]'") from None
    except Exception as e:  # noqa: BLE001
        raise ConversionError(edge, f"coremltools could not compress the weights: {type(e).__name__}: "
                              f"{_first(e)}") from None


def _non_finite_consts(mlmodel) -> dict:
    """{const op name: None} for the program's float constants holding inf or nan (k-means cannot
    cluster them; a linear scale of inf zeroes the tensor)."""
    prog = getattr(mlmodel, "_mil_program", None)
    out = {}
    for fn in (prog.functions.values() if prog is not None else ()):
        for op in fn.find_ops(op_type="const"):
            val = op.outputs[0].val
            if isinstance(val, np.ndarray) and val.dtype.kind == "f" and val.size and not np.isfinite(val).all():
                out[op.name] = None
    return out


def _convert_error(e: Exception) -> ConversionError:
    import re

    text = str(e)
    m = re.search(r"Unsupported fx node (\S+)", text) or re.search(r"PyTorch convert function for op '([^']+)' "
                                                                   r"not implemented", text)
    if m:
        return UnsupportedOperator(MlpackageFromTorch.name(), m.group(1).rstrip(","), "coremltools cannot convert it")
    return ConversionError(MlpackageFromTorch.name(), f"coremltools.convert failed: {type(e).__name__}: {_first(e)}")


def _first(e) -> str:
    return next((ln.strip() for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)[:300]
