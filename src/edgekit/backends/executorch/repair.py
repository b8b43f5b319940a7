"""Static int8 that does not collapse: the quantized program (PT2E's simulated int8, in torch) runs
beside the float one on calibration samples; while its outputs' cosine is below the target's smoke
floor (then up to the aim), the layers responsible are kept float (the quantizer's filter skips them)
and the model is quantized again, over a few rounds.

The layers responsible are found from the activations and weights whose int8 quantize/dequantize
pair loses most (mean |error| relative to mean |value|), measured on the float values each observer saw during calibration (so an earlier
layer's error does not count): the ops that produce and consume such a tensor stay float. In
MiniLM these are the feed-forward output projections (their inputs, after GELU, carry outliers that
one per-tensor int8 scale cannot hold) and the attention mask's add (-3.4e38 beside the scores).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROUNDS = 4
CHECK_SAMPLES = 16
TRACE_SAMPLES = 4
NOISE_FLOOR = 0.05  # an int8 pair losing less than this (mean |error| / mean |value|) is what int8 costs anyway
PER_ROUND = 8  # tensors blamed per round
LAYOUT = {"view", "reshape", "transpose", "permute", "squeeze", "unsqueeze", "flatten", "dropout", "clone",
          "expand", "slice", "select", "contiguous", "_to_copy", "to"}
MASK_LIKE = 1e4  # elements beyond this (additive masks, -inf stand-ins) are left out of a tensor's loss


@dataclass
class Attempt:
    graph: object  # the converted (simulated int8) GraphModule
    cosine: float
    losses: dict = field(default_factory=dict)  # op node name -> (loss of its worst int8 tensor, why)


def cosine(a, b) -> float:
    """Mean per-sample cosine of two batches of outputs (lists of tensors), on the worst output."""
    import torch

    worst = 1.0
    for xs, ys in zip(zip(*a), zip(*b)):
        cs = [float(torch.nn.functional.cosine_similarity(x.flatten().double(), y.flatten().double(), dim=0))
              for x, y in zip(xs, ys)]
        worst = min(worst, sum(cs) / len(cs))
    return worst


def observer_losses(prepared, traced: dict) -> dict:
    """{op node name: (loss, why)}: for every observer, the mean |error| of the int8 quantize/dequantize
    (with its qparams) of the float values it saw, relative to their mean |value| (so outliers that
    round the bulk to zero show), blamed on the ops producing and consuming them."""
    import torch

    out: dict = {}
    for node in prepared.graph.nodes:
        values = traced.get(node.name)
        if not values:
            continue
        obs = getattr(prepared, node.target)
        scale, zero = obs.calculate_qparams()
        loss = 0.0
        for x in values:
            x = x.detach().float()
            if scale.numel() > 1:
                q = torch.fake_quantize_per_channel_affine(x, scale.float(), zero.int(), obs.ch_axis,
                                                           obs.quant_min, obs.quant_max)
            else:
                q = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero), obs.quant_min, obs.quant_max)
            keep = x.abs() < MASK_LIKE
            size = float(x[keep].abs().mean()) if keep.any() else 0.0
            if size > 0:  # mean |error| relative to mean |value|: outliers that zero the bulk show
                err = float((x[keep] - q[keep]).abs().mean()) / size
                loss = max(loss, err if np.isfinite(err) else 1.0)
        src = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        ops = [u for u in node.users if _blamable(u)] + ([src] if src is not None and _blamable(src) else [])
        for op in ops:
            what = "weights" if src is not None and src.op == "get_attr" else "an input" if op is not src else "output"
            if loss > out.get(op.name, (0.0, ""))[0]:
                out[op.name] = (loss, f"int8 {what} loses {loss:.3f}")
    return out


def _blamable(node) -> bool:
    """An op the quantizer annotated for its own sake (keeping it float changes the model): not a
    weight, and not a layout op whose int8 form only follows its neighbours'."""
    name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    return node.op == "call_function" and "quantization_annotation" in node.meta and name not in LAYOUT


def trace_observers(prepared, batches):
    """Run ``batches`` through the prepared graph (observing, as calibration does), keeping the float
    values every observer sees."""
    import torch
    from torchao.quantization.pt2e import ObserverBase

    names = {n.target: n.name for n in prepared.graph.nodes
             if n.op == "call_module" and isinstance(getattr(prepared, n.target), ObserverBase)}
    seen: dict = {}

    class Tracer(torch.fx.Interpreter):
        def call_module(self, target, args, kwargs):
            if target in names and isinstance(args[0], torch.Tensor):
                seen.setdefault(names[target], []).append(args[0].detach().clone())
            return super().call_module(target, args, kwargs)

    for args, kwargs in batches:
        Tracer(prepared).run(*args, *kwargs.values())
    return seen


def module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def repair(attempt, floor: float, aim: float):
    """``attempt(keep_float: dict) -> Attempt``; returns (the last Attempt, {node: why} kept float,
    cosine history)."""
    kept: dict = {}
    best = attempt(kept)
    history = [best.cosine]
    for _ in range(ROUNDS):
        if best.cosine >= (aim if kept else floor):
            break
        ranked = sorted(((loss, name, why) for name, (loss, why) in best.losses.items()
                         if name not in kept and loss > NOISE_FLOOR), reverse=True)
        picks = {name: why for _, name, why in ranked[:PER_ROUND]}
        if not picks:
            break
        trial = attempt({**kept, **picks})
        kept.update(picks)
        best = trial
        history.append(trial.cosine)
    return best, kept, history
