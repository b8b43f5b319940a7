"""torch -> TFLite directly with litert-torch (no ONNX, no TensorFlow). fp32, and static int8 through
torchao's PT2E quantizer: static int8 gives int8 inputs and outputs with no float kernels, so it
serves int8-I/O targets (dynamic int8 and float-I/O int8 come from ai-edge-quantizer after the fp32
model: QuantizedTfliteFromTflite). A second route beside onnx2tf: when one fails on a
model, the planner tries the other."""
from __future__ import annotations

import numpy as np

from ...core.buckets import AXIS, bucketed, parse_buckets
from ...core.errors import ConversionError
from ...core.graph import Converter
from ...reports.fmt import calibration_text
from ...runner.runtime_base import sample_feed


class TfliteFromTorch(Converter):
    src, dst = "torch", "tflite"
    # after torch -> ONNX -> onnx2tf (4.0) on small models, before it on large ones (onnx2tf's cost_for:
    # it converts MiniLM in ~4 min where litert-torch takes ~20 s); before the tracing exporter's route (4.5)
    cost = 4.2
    # no int8-dynamic: litert-torch's PT2E dynamic int8 collapses the digits CNN (cosine 0.11, measured);
    # dynamic-range int8 comes from ai-edge-quantizer after the float model instead
    recipes = frozenset({"none", "int8-static"})
    io_dtypes = frozenset({"float32", "int8"})
    requires = (("torch", "torch"), ("litert_torch", "litert-torch"))
    tools = ("torch", "litert-torch", "torchao")
    # buckets: one signature per sequence length ("seq16", "seq32", ...), the weights shared (rt_litert.py
    # picks the smallest that holds a sample)
    target_options = ("buckets",)

    @classmethod
    def refuses(cls, recipe, target):
        # PT2E static int8 always yields int8 I/O; for float I/O, only when no other route exists
        if recipe.kind == "int8-static" and target.io_dtype != "int8":
            return "gives int8 inputs/outputs under static int8 (the target asks for float32 I/O)"
        if recipe.kind != "none" and target.option("buckets") is not None:
            return "converts shape buckets in float only (their int8 comes from ai-edge-quantizer's dynamic range)"
        return super().refuses(recipe, target)

    def convert(self, artifact, out_dir, ctx):
        import torch

        src = ctx.source
        module = artifact.obj
        feed = {name: torch.from_numpy(a) for name, a in src.examples().items()}
        # by name when forward() takes the input names (the TFLite signature keeps them), else in order
        args, kwargs = ((), feed) if _takes_names(module, feed) else (tuple(feed.values()), {})
        path = out_dir / "model.tflite"
        recipe = ctx.recipe
        option = ctx.target.option("buckets")
        buckets = None if option is None else parse_buckets(option, src.inputs)
        try:
            with _quiet():
                import litert_torch

                if buckets:
                    model = self._bucketed(litert_torch, torch, module, args, kwargs, buckets, ctx)
                elif recipe is None or recipe.kind == "none":
                    model = litert_torch.convert(module, args, kwargs)
                else:
                    model = self._quantized(litert_torch, torch, module, args, kwargs, ctx)
                model.export(str(path))
        except ConversionError:
            raise
        except Exception as e:
            first = next((ln for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)
            raise ConversionError(self.name(), f"litert-torch failed: {first[:300]}") from None
        ctx.notes.append("litert-torch" + (f", PT2E {recipe.kind}" if recipe and recipe.kind != "none" else ""))
        return path

    def _bucketed(self, litert_torch, torch, module, args, kwargs, buckets, ctx):
        """One signature ``seqN`` per bucket length N: the bucketed inputs cut to N on axis 1 (litert-torch
        keeps one copy of the weights the signatures share)."""
        names = bucketed(ctx.source.inputs, buckets[-1])
        index = (slice(None),) * AXIS
        converter = None
        for n in buckets:
            cut_args = tuple(a[index + (slice(0, n),)] if a.dim() > AXIS and a.shape[AXIS] == buckets[-1] else a
                             for a in args)
            cut_kwargs = {k: (a[index + (slice(0, n),)] if k in names else a) for k, a in kwargs.items()}
            add = litert_torch.signature if converter is None else converter.signature
            converter = add(f"seq{n}", module, cut_args, cut_kwargs)
        ctx.notes.append(f"shape buckets {', '.join(map(str, buckets))} on axis {AXIS} of {', '.join(names)}: "
                         f"signatures {', '.join(f'seq{n}' for n in buckets)}, weights shared")
        return converter.convert()

    def _quantized(self, litert_torch, torch, module, args, kwargs, ctx):
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        recipe = ctx.recipe  # static int8 (the only recipe it quantizes with)
        quantizer = PT2EQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=recipe.calibration.per_channel, is_dynamic=False))
        graph = torch.export.export(module, args, kwargs).module()
        graph = prepare_pt2e(graph, quantizer)
        n = min(ctx.data.n_calib, recipe.calibration.samples)
        dtypes = {s.name: np.dtype(s.dtype) for s in ctx.source.inputs}
        with torch.no_grad():
            for i in range(n):
                feed = sample_feed({k: ctx.data.calib[k] for k in dtypes}, i, ctx.data.stacked)
                batch = [torch.from_numpy(np.asarray(feed[k]).astype(t)) for k, t in dtypes.items()]
                if kwargs:
                    graph(**dict(zip(dtypes, batch)))
                else:
                    graph(*batch)
        ctx.notes.append(f"{calibration_text(n, ctx.data.n_calib, recipe.calibration.samples)} (min/max)")
        graph = convert_pt2e(graph, fold_quantize=False)
        return litert_torch.convert(graph, args, kwargs, quant_config=QuantConfig(pt2e_quantizer=quantizer))


def _takes_names(module, feed: dict) -> bool:
    import inspect

    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return all(name in params for name in feed)


def _quiet():
    """litert-torch prints progress to stdout and logs through absl (the root logger): keep it out of the CLI."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("")
