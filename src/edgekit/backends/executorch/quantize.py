"""Static int8 for XNNPACK: the XNNPACK quantizer (symmetric int8, per channel as the recipe says)
through PT2E: ``prepare_pt2e``, calibration on the data's calibration samples (never the held-out
ones; at most the recipe's cap), ``convert_pt2e``, and ``torch.export`` again. The XNNPACK
partitioner then takes the quantized patterns as int8 kernels; inputs and outputs stay float32."""
from __future__ import annotations

import numpy as np

from ...core.errors import ConversionError
from ...reports.fmt import calibration_text
from ...runner.runtime_base import sample_feed


def quantize(ep, src, ctx, edge: str):
    """The exported program ``ep`` quantized and exported again."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .converters import _first, _quiet

    recipe = ctx.recipe
    if ctx.data is None or not ctx.data.n_calib:
        raise ConversionError(edge, "static int8 needs calibration samples, and the data has none.",
                              "Pass --data or --calib-data.")
    quantizer = XNNPACKQuantizer().set_global(_config(get_symmetric_quantization_config, recipe))
    names = [s.name for s in src.inputs]
    by_name = _by_name(ep)
    dtypes = {s.name: np.dtype(s.dtype) for s in src.inputs}
    n = min(ctx.data.n_calib, recipe.calibration.samples)
    try:
        with _quiet():
            graph = prepare_pt2e(ep.module(), quantizer)
            with torch.no_grad():
                for i in range(n):
                    feed = sample_feed({k: ctx.data.calib[k] for k in names}, i, ctx.data.stacked)
                    batch = [torch.from_numpy(np.ascontiguousarray(np.asarray(feed[k]).astype(dtypes[k])))
                             for k in names]
                    graph(**dict(zip(names, batch))) if by_name else graph(*batch)
            graph = convert_pt2e(graph)
            example = [torch.from_numpy(np.ascontiguousarray(a)) for a in src.examples().values()]
            out = torch.export.export(graph, (), dict(zip(names, example))) if by_name else \
                torch.export.export(graph, tuple(example))
    except Exception as e:  # noqa: BLE001
        raise ConversionError(edge, f"the XNNPACK quantizer failed: {type(e).__name__}: {_first(e)}") from None
    ctx.notes.append(f"XNNPACK quantizer (PT2E), symmetric int8, "
                     f"{'per channel' if recipe.calibration.per_channel else 'per tensor'}; "
                     f"{calibration_text(n, ctx.data.n_calib, recipe.calibration.samples)} (min/max)")
    return out


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
