"""Structured pruning of a transformer's attention heads (and optionally its feed-forward neurons),
by surgery: the removed heads' rows of the query/key/value projections and the matching columns of
the attention's output projection are cut out, so every runtime does less work and the artifact is
smaller. Then a short fine-tune against the unpruned model's outputs (train_loop.py).

Which heads go: each head's importance is its effect on the model's output on training samples,
measured by ablation (the head's part of the attention output zeroed, one head at a time: 1 - the
mean cosine between the outputs with and without it). The least important ``amount`` of all heads,
ranked across layers, are removed; every layer keeps at least one head. Feed-forward neurons
(``ffn_amount``, per layer) are ranked by mean |activation| times the norm of their outgoing weights.

Attention blocks are found by their layout (Hugging Face BERT-style: a self-attention module with
``query``/``key``/``value`` linear layers and ``attention_head_size``, beside an ``output.dense``
projection; a layer's ``intermediate.dense`` -> ``output.dense`` is its feed-forward part).
"""
from __future__ import annotations

import copy

import numpy as np

from ...core.errors import ConversionError
from .train_edges import _TrainingEdge

EDGE = "PruneHeads"
IMPORTANCE_SAMPLES = 64  # training samples the heads' effect is measured on (each head: one pass over them)


def find_attention(model) -> list[tuple[str, object, object]]:
    """(name, self-attention module, its output projection) for every attention block, in order."""
    from torch import nn

    found = []
    for name, m in model.named_modules():
        attn, out = getattr(m, "self", None), getattr(getattr(m, "output", None), "dense", None)
        if attn is None or not isinstance(out, nn.Linear):
            continue
        if all(isinstance(getattr(attn, p, None), nn.Linear) for p in ("query", "key", "value")) and \
                hasattr(attn, "attention_head_size") and out.in_features == attn.query.out_features:
            found.append((name, attn, out))
    return found


def find_ffn(model) -> list[tuple[str, object, object, object]]:
    """(name, intermediate module, its dense layer, the output dense layer) for every feed-forward part."""
    from torch import nn

    found = []
    for name, m in model.named_modules():
        inter, out = getattr(m, "intermediate", None), getattr(getattr(m, "output", None), "dense", None)
        dense = getattr(inter, "dense", None)
        if isinstance(dense, nn.Linear) and isinstance(out, nn.Linear) and out.in_features == dense.out_features:
            found.append((name, inter, dense, out))
    return found


def _heads(attn) -> int:
    return attn.query.out_features // attn.attention_head_size


def _run(model, batch: list):
    from .train_loop import _outputs

    torch, arrays, names, idx, dtypes = batch
    return _outputs(model, arrays, names, idx, torch, dtypes).float().flatten(1)


def importance(model, batch: list, ffn: bool) -> tuple[list, list]:
    """Per attention block, each head's ablation effect on the output; per feed-forward part, each
    neuron's mean |activation| x outgoing weight norm (empty lists when ``ffn`` is false)."""
    import torch
    from torch.nn import functional as F

    blocks, ffns = find_attention(model), find_ffn(model) if ffn else []
    masks = [torch.ones(_heads(a)) for _, a, _ in blocks]
    acts = [torch.zeros(d.out_features) for _, _, d, _ in ffns]
    hooks = []
    for (_, attn, out), mask in zip(blocks, masks):
        d = attn.attention_head_size

        def pre(mod, args, mask=mask, d=d):
            x = args[0]
            return (x * mask.repeat_interleave(d).to(x.dtype),) + tuple(args[1:])

        hooks.append(out.register_forward_pre_hook(pre))
    counting = [True]
    for (_, inter, _, _), acc in zip(ffns, acts):
        def post(mod, args, y, acc=acc):
            if counting[0]:
                acc += y.detach().abs().flatten(0, -2).mean(0)

        hooks.append(inter.register_forward_hook(post))
    try:
        with torch.no_grad():
            ref = _run(model, batch)
            counting[0] = False
            scores = []
            for mask in masks:
                row = []
                for h in range(len(mask)):
                    mask[h] = 0.0
                    row.append(float((1.0 - F.cosine_similarity(_run(model, batch), ref, dim=1)).mean()))
                    mask[h] = 1.0
                scores.append(row)
    finally:
        for h in hooks:
            h.remove()
    neurons = [(a * out.weight.detach().norm(dim=0)).tolist() for a, (_, _, _, out) in zip(acts, ffns)]
    return scores, neurons


def heads_to_remove(scores: list, amount: float) -> list[list[int]]:
    """The least important ``amount`` of all heads, ranked across blocks; each block keeps one at least."""
    total = sum(len(r) for r in scores)
    n = int(round(total * amount))
    ranked = sorted((s, b, h) for b, row in enumerate(scores) for h, s in enumerate(row))
    left = [len(r) for r in scores]
    drop = [[] for _ in scores]
    for _, b, h in ranked:
        if n <= 0:
            break
        if left[b] > 1:
            drop[b].append(h)
            left[b] -= 1
            n -= 1
    return [sorted(d) for d in drop]


def prune_heads(model, drop: list[list[int]]) -> list[dict]:
    """Cut the heads ``drop[i]`` out of attention block i, in place: fewer rows of query/key/value,
    fewer columns of the output projection."""
    import torch

    from .channels import _sliced

    layers = []
    for (name, attn, out), heads in zip(find_attention(model), drop):
        n, d = _heads(attn), attn.attention_head_size
        keep = [h for h in range(n) if h not in set(heads)]
        idx = torch.tensor([h * d + i for h in keep for i in range(d)], dtype=torch.long)
        for p in ("query", "key", "value"):
            setattr(attn, p, _sliced(getattr(attn, p), idx, None))
        model.set_submodule(f"{name}.output.dense", _sliced(out, None, idx))
        attn.num_attention_heads, attn.all_head_size = len(keep), len(keep) * d
        layers.append({"layer": name, "heads": n, "kept": len(keep), "removed": heads})
    return layers


def prune_neurons(model, scores: list, amount: float, multiple_of: int) -> list[dict]:
    """Remove the least important ``amount`` of every feed-forward part's neurons, in place."""
    import torch

    from .channels import _sliced, kept_count

    layers = []
    for (name, _, dense, out), s in zip(find_ffn(model), scores):
        n_keep = kept_count(dense.out_features, amount, multiple_of)
        keep = torch.sort(torch.argsort(torch.tensor(s), descending=True)[:n_keep]).values
        model.set_submodule(f"{name}.intermediate.dense", _sliced(dense, keep, None))
        model.set_submodule(f"{name}.output.dense", _sliced(out, None, keep))
        layers.append({"layer": name, "neurons": dense.out_features, "kept": int(n_keep)})
    return layers


def shrink_heads(teacher, example: tuple, arrays: dict, source, settings) -> tuple[object, dict]:
    """A copy of ``teacher`` with its least important heads (and neurons) removed, and what was done."""
    import torch

    model = copy.deepcopy(teacher).eval()
    if not find_attention(model):
        raise ConversionError(EDGE, "found no attention block (query/key/value projections beside an output "
                              "projection) in the module.", "Use prune-structured (channels) or distill instead.")
    names = [s.name for s in source.inputs]
    n = len(arrays[names[0]])
    idx = np.random.default_rng(settings.seed).permutation(n)[:min(n, IMPORTANCE_SAMPLES)]
    batch = [torch, arrays, names, idx, {s.name: s.dtype for s in source.inputs}]
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    from ...core.terminal import say

    heads = sum(_heads(a) for _, a, _ in find_attention(model))
    say(f"[edgekit] {EDGE}: measuring each of {heads} attention heads' effect on the output "
        f"({heads + 1} passes over {len(idx)} training samples)")
    try:
        scores, neurons = importance(model, batch, settings.ffn_amount > 0)
    finally:
        torch.set_num_threads(threads)
    drop = heads_to_remove(scores, settings.amount)
    layers = prune_heads(model, drop)
    total, kept = sum(x["heads"] for x in layers), sum(x["kept"] for x in layers)
    changes = {"heads_before": total, "heads_after": kept, "heads_removed": round(1.0 - kept / total, 4),
               "layers": layers, "importance": f"ablation on {len(idx)} training samples (1 - output cosine)",
               "head_importance": [[round(s, 6) for s in row] for row in scores]}
    if settings.ffn_amount > 0:
        ffn = prune_neurons(model, neurons, settings.ffn_amount, settings.multiple_of)
        changes["ffn_layers"] = ffn
        changes["ffn_removed"] = round(1.0 - sum(x["kept"] for x in ffn) / sum(x["neurons"] for x in ffn), 4)
    with torch.no_grad():
        model(*example)  # the shrunk module still runs on the source's inputs
    return model, changes


class PruneHeads(_TrainingEdge):
    """Remove the least important attention heads (and feed-forward neurons), then fine-tune against
    the unpruned model's outputs."""

    src, dst = "torch", "torch"
    recipes = frozenset({"prune-heads"})
    use_labels = False

    def convert(self, artifact, out_dir, ctx):
        self._arrays = ctx.data.training_split()[0]  # the heads' effect is measured on training samples
        self._source = ctx.source
        return super().convert(artifact, out_dir, ctx)

    def student(self, teacher, example, settings):
        return shrink_heads(teacher, example, self._arrays, self._source, settings)
