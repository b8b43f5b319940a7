"""Static int8 for XNNPACK: the XNNPACK quantizer (symmetric int8, per channel as the recipe says,
activations observed by min/max) through PT2E: ``prepare_pt2e``, calibration on the data's
calibration samples (never the held-out ones; at most the recipe's cap), ``convert_pt2e``, and
``torch.export`` again. The XNNPACK partitioner then takes the quantized patterns as int8 kernels;
inputs and outputs stay float32. Layers whose int8 form collapses the outputs are kept float
(``repair.py``); if it still collapses, the conversion is refused naming them."""
from __future__ import annotations

import numpy as np

from ...core.errors import ConversionError
from ...reports.fmt import calibration_text
from ...runner.runtime_base import sample_feed
from . import repair as R


def quantize(ep, src, ctx, edge: str, quantizer=None, label: str = "XNNPACK quantizer"):
    """The exported program ``ep`` quantized and exported again. ``quantizer``: (the PT2E quantizer
    class, its ``get_symmetric_quantization_config``) of XNNPACK's kind (default: ExecuTorch's);
    ``label`` names it in notes and errors."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if quantizer is None:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                              get_symmetric_quantization_config)
    else:
        XNNPACKQuantizer, get_symmetric_quantization_config = quantizer  # noqa: N806

    from .converters import _first, _quiet

    recipe, data = ctx.recipe, ctx.data
    if data is None or not data.n_calib:
        raise ConversionError(edge, "static int8 needs calibration samples, and the data has none.",
                              "Pass --data or --calib-data.")
    names = [s.name for s in src.inputs]
    by_name = _by_name(ep)
    dtypes = {s.name: np.dtype(s.dtype) for s in src.inputs}
    n = min(data.n_calib, recipe.calibration.samples)

    def batch(i):
        feed = sample_feed({k: data.calib[k] for k in names}, i, data.stacked)
        tensors = [torch.from_numpy(np.ascontiguousarray(np.asarray(feed[k]).astype(dtypes[k]))) for k in names]
        return ((), dict(zip(names, tensors))) if by_name else (tuple(tensors), {})

    batches = [batch(i) for i in range(n)]
    checks = batches[:R.CHECK_SAMPLES]
    float_module = ep.module()
    with torch.no_grad():
        ref = [_flat(float_module(*a, **k)) for a, k in checks]
    config = _config(get_symmetric_quantization_config, recipe)

    def attempt(keep_float: dict) -> R.Attempt:
        quantizer = _quantizer(XNNPACKQuantizer)().set_global(config)
        if keep_float:
            quantizer.set_filter_function(lambda node: node.name not in keep_float)
        graph = prepare_pt2e(ep.module(), quantizer)
        with torch.no_grad():
            traced = R.trace_observers(graph, batches[:R.TRACE_SAMPLES])
            for args, kwargs in batches[R.TRACE_SAMPLES:]:
                graph(*args, **kwargs)
            losses = R.observer_losses(graph, traced)
            graph = convert_pt2e(graph)
            cos = R.cosine(ref, [_flat(graph(*a, **k)) for a, k in checks])
        return R.Attempt(graph, cos, losses)

    tol = ctx.target.tolerance
    floor, aim = tol.smoke_cosine, max(tol.smoke_cosine, 1.0 - (1.0 - tol.min_cosine) * 0.75)
    try:
        with _quiet():
            best, kept, history = R.repair(attempt, floor, aim)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConversionError(edge, f"the {label} failed: {type(e).__name__}: {_first(e)}") from None
    paths = {node.name: R.module_path(node) for node in float_module.graph.nodes}
    blamed = [f"{name}{' (' + paths[name] + ')' if paths.get(name) else ''}: {why}" for name, why in kept.items()]
    if best.cosine < floor:
        raise ConversionError(edge, f"static int8 collapses: cosine {best.cosine:.4f} to the float model on "
                              f"{len(checks)} calibration samples"
                              + (f", with {len(kept)} layers kept float ({'; '.join(blamed[:4])})" if kept else ""),
                              "Use the float target, or quantize with more representative calibration data.")
    ctx.notes.append(f"{label} (PT2E), symmetric int8, "
                     f"{'per channel' if recipe.calibration.per_channel else 'per tensor'}; "
                     f"{calibration_text(n, data.n_calib, recipe.calibration.samples)} (min/max)")
    if kept:
        ctx.notes.append(f"kept float ({len(kept)}): {'; '.join(blamed[:8])}{', ...' if len(kept) > 8 else ''}; "
                         f"cosine on {len(checks)} calibration samples {' -> '.join(f'{c:.4f}' for c in history)}")
    example = [torch.from_numpy(np.ascontiguousarray(a)) for a in src.examples().values()]
    try:
        with _quiet():
            return torch.export.export(best.graph, (), dict(zip(names, example))) if by_name else \
                torch.export.export(best.graph, tuple(example))
    except Exception as e:  # noqa: BLE001
        raise ConversionError(edge, f"torch.export of the quantized model failed: {_first(e)}") from None


def _flat(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _flat(o)]


def _quantizer(base):
    """The XNNPACK quantizer, with integer arithmetic left integer: before annotating, it turns the
    scalar operand of every add/mul into a float32 tensor, which makes an integer add (a position
    index: ``arange(64) + 0``, in BERT's attention mask) float, and the indexing that uses it fails.
    Those constants are given back the dtype of the integer node they feed."""
    import torch

    class Quantizer(base):
        def transform_for_annotation(self, model):
            model = super().transform_for_annotation(model)
            for node in model.graph.nodes:
                val = node.meta.get("val")
                if node.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor) or \
                        getattr(val, "dtype", torch.float32).is_floating_point:
                    continue
                for arg in node.args:
                    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and "_tensor_constant_" in arg.target:
                        fixed = getattr(model, arg.target).to(val.dtype)
                        model.register_buffer(arg.target, fixed)
                        arg.meta["val"] = arg.meta["val"].fake_mode.from_tensor(fixed, static_shapes=True)
            model.recompile()
            return model

    return Quantizer


def _config(make, recipe):
    """XNNPACK's symmetric int8 config, activations observed by min/max as the recipe says (XNNPACK's
    default is a histogram search)."""
    import dataclasses

    from torchao.quantization.pt2e import MinMaxObserver

    config = make(is_per_channel=bool(recipe.calibration.per_channel))
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _by_name(ep) -> bool:
    """Whether the program was exported with its inputs by name (keyword arguments)."""
    args, kwargs = ep.example_inputs or ((), {})
    return bool(kwargs) and not args
