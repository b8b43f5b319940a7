"""Structured channel pruning by surgery: the lowest-L1 output channels of a convolution (or units of
a hidden linear layer) are removed, with the matching channels of the BatchNorm after it and the
input channels of the layers it feeds, so the module is physically smaller (fewer parameters, fewer
multiply-adds in every runtime). Also the width multiplier of a distillation student.

Which layer feeds which is read from a ``torch.fx`` trace: a producer is pruned only when every path
from it reaches a convolution or a linear layer through operators that keep channels apart
(activations, pooling, dropout, BatchNorm, a flatten before a linear layer). A producer whose output
is added, concatenated or returned is left whole (said in the summary).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ...core.errors import ConversionError

EDGE = "PruneStructured"


@dataclass
class Group:
    producer: str
    followers: list = field(default_factory=list)  # BatchNorms pruned along
    consumers: list = field(default_factory=list)  # (module name, spatial size per channel: 1, or H*W after a flatten)


def _pass_through():
    import torch
    from torch import nn
    from torch.nn import functional as F

    modules = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
               nn.ELU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)
    funcs = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.max_pool2d, F.avg_pool2d,
             F.adaptive_avg_pool2d, F.dropout, F.leaky_relu, F.hardswish}
    return modules, funcs, {"relu", "sigmoid", "tanh", "contiguous"}


def find_groups(module, example: tuple) -> tuple[list[Group], list[str]]:
    """The prunable producers of ``module`` and (why) the layers left whole."""
    import torch
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = fx.symbolic_trace(module)
        ShapeProp(gm).propagate(*example)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConversionError(EDGE, f"cannot trace the module to find which layer feeds which ({first}).",
                              "Structured pruning needs a module torch.fx can trace; try prune-magnitude.") from None
    mods = dict(gm.named_modules())
    pass_mods, pass_funcs, pass_methods = _pass_through()
    groups, whole = [], []
    for node in gm.graph.nodes:
        mod = mods.get(node.target) if node.op == "call_module" else None
        if not (isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)):
            continue
        group, why = Group(node.target), None
        todo, seen = [(u, False, 1) for u in node.users], set()
        while todo and why is None:
            user, flat, spatial = todo.pop()
            if user in seen:
                continue
            seen.add(user)
            umod = mods.get(user.target) if user.op == "call_module" else None
            shape_in = tuple(user.args[0].meta["tensor_meta"].shape) if user.args and hasattr(user.args[0], "meta") \
                and "tensor_meta" in user.args[0].meta else ()
            if isinstance(umod, (nn.BatchNorm2d, nn.BatchNorm1d)) and not flat:
                group.followers.append(user.target)
            elif isinstance(umod, pass_mods) or (user.op == "call_function" and user.target in pass_funcs) or \
                    (user.op == "call_method" and user.target in pass_methods):
                pass
            elif _is_flatten(user, umod, shape_in) and isinstance(mod, nn.Conv2d) and not flat:
                flat, spatial = True, int(torch.tensor(shape_in[2:]).prod().item())
            elif isinstance(umod, nn.Conv2d) and umod.groups == 1 and not flat and isinstance(mod, nn.Conv2d):
                group.consumers.append((user.target, 1))
                continue
            elif isinstance(umod, nn.Linear) and (flat or isinstance(mod, nn.Linear)):
                group.consumers.append((user.target, spatial))
                continue
            else:
                why = f"{node.target}: its output " + ("is an output of the model" if user.op == "output" else
                                                       f"reaches {user.op} '{user.target}', which mixes channels")
                break
            todo += [(u, flat, spatial) for u in user.users]
        if why is None and group.consumers:
            groups.append(group)
        else:
            whole.append(why or f"{node.target}: feeds no layer whose inputs can shrink (an output layer)")
    return groups, whole


def _is_flatten(user, umod, shape_in) -> bool:
    import torch
    from torch import nn

    if isinstance(umod, nn.Flatten):
        return umod.start_dim == 1 and umod.end_dim == -1
    out = user.meta.get("tensor_meta")
    if len(shape_in) != 4 or out is None or len(out.shape) != 2:
        return False
    return (user.op == "call_function" and user.target in (torch.flatten, torch.reshape)) or \
        (user.op == "call_method" and user.target in ("flatten", "view", "reshape"))


def kept_count(channels: int, amount: float, multiple_of: int = 1) -> int:
    """How many of ``channels`` stay: ``1 - amount`` of them, rounded to the nearest multiple of
    ``multiple_of`` (at least one multiple, at most all)."""
    m = max(1, multiple_of)
    return min(channels, max(m, int(channels * (1.0 - amount) / m + 0.5) * m))


def shrink(module, example: tuple, amount: float, multiple_of: int = 1) -> tuple[object, dict]:
    """A copy of ``module`` with ``amount`` of every prunable producer's channels removed (lowest L1
    norm of their weights first; counts rounded to ``multiple_of``), and what was done."""
    import torch

    model = copy.deepcopy(module).eval()
    groups, whole = find_groups(model, example)
    if not groups:
        raise ConversionError(EDGE, "no layer of the module can lose channels: " + "; ".join(whole[:3]) + ".",
                              "Try prune-magnitude (unstructured), which applies to any module.")
    mods = dict(model.named_modules())
    out_keep, in_keep, layers = {}, {}, []
    for g in groups:
        w = mods[g.producer].weight.detach()
        norms = w.abs().reshape(w.shape[0], -1).sum(1)
        n_keep = kept_count(w.shape[0], amount, multiple_of)
        keep = torch.sort(torch.argsort(norms, descending=True)[:n_keep]).values
        out_keep[g.producer] = keep
        for f in g.followers:
            out_keep[f] = keep
        for name, spatial in g.consumers:
            idx = keep if spatial == 1 else (keep[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1)
            in_keep[name] = idx
        layers.append({"layer": g.producer, "channels": int(w.shape[0]), "kept": int(n_keep)})
    total, kept = sum(x["channels"] for x in layers), sum(x["kept"] for x in layers)
    for name in sorted(set(out_keep) | set(in_keep)):
        model.set_submodule(name, _sliced(mods[name], out_keep.get(name), in_keep.get(name)))
    with torch.no_grad():
        model(*example)  # the shrunk module still runs on the source's inputs
    return model, {"layers": layers, "left_whole": whole, "channels_removed": round(1.0 - kept / total, 4)}


def _sliced(mod, out_idx, in_idx):
    import torch
    from torch import nn

    mod = copy.deepcopy(mod)
    with torch.no_grad():
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            for attr in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(mod, attr)
                if t is not None:
                    t.data = t.data[out_idx].clone()
            mod.num_features = len(out_idx)
            return mod
        w = mod.weight.data
        if out_idx is not None:
            w = w[out_idx]
            if mod.bias is not None:
                mod.bias.data = mod.bias.data[out_idx].clone()
        if in_idx is not None:
            w = w[:, in_idx]
        mod.weight.data = w.clone()
        if isinstance(mod, nn.Conv2d):
            mod.out_channels, mod.in_channels = w.shape[0], w.shape[1]
        else:
            mod.out_features, mod.in_features = w.shape[0], w.shape[1]
    return mod


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
