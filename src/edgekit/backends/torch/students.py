"""Distillation students made from the teacher itself: fewer of its repeated blocks (the layers of a
transformer: every ``nn.ModuleList`` of same-class blocks, the longest one, evenly spaced from the
first to the last), and/or the teacher at a width multiplier (its lowest-L1 channels removed,
channels.py). Starting from the teacher's own weights, the student needs far less training."""
from __future__ import annotations

import copy

from ...core.errors import ConversionError


def make_student(teacher, example: tuple, settings) -> tuple[object, dict]:
    if settings.layers <= 0 and settings.width >= 1.0:
        raise ConversionError("DistillStudent", "the recipe makes the student no smaller (layers = 0, width = 1.0).",
                              "Set [training] layers = N (fewer blocks) or width < 1 (fewer channels).")
    model, changes = copy.deepcopy(teacher).eval(), {}
    if settings.layers > 0:
        model, changes["blocks"] = _fewer_blocks(model, settings.layers)
    if settings.width < 1.0:
        from .channels import shrink

        model, shrunk = shrink(model, example, 1.0 - settings.width, settings.multiple_of)
        changes["width"] = settings.width
        changes.update(shrunk)
    return model, changes


def _fewer_blocks(model, keep: int) -> tuple[object, dict]:
    from torch import nn

    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 1
             and len({type(b) for b in m}) == 1]
    if not lists:
        raise ConversionError("DistillStudent", "the teacher has no list of repeated blocks (an nn.ModuleList of layers) "
                              "to take fewer of.", "Use a width multiplier ([training] width) instead.")
    name, blocks = max(lists, key=lambda item: len(item[1]))
    n = len(blocks)
    if keep >= n:
        raise ConversionError("DistillStudent", f"the teacher's '{name}' has {n} blocks; keeping {keep} makes it no smaller.",
                              f"Set [training] layers below {n}.")
    picked = sorted({round(i * (n - 1) / max(keep - 1, 1)) for i in range(keep)}) if keep > 1 else [n - 1]
    model.set_submodule(name, nn.ModuleList([blocks[i] for i in picked]))
    for m in model.modules():  # a model configured with its block count (Hugging Face's num_hidden_layers)
        cfg = getattr(m, "config", None)
        if cfg is not None and getattr(cfg, "num_hidden_layers", None) == n:
            cfg.num_hidden_layers = len(picked)
    return model, {"list": name, "of": n, "kept": picked}
