"""Training recipes: the recipes that change the model itself (pruning, distillation, quantization-aware
training) before it is converted. They are recipe files like the others (``kind`` one of :data:`TRAIN_KINDS`, a
``[training]`` table of settings, a ``[budget]`` for what the changed model must keep against the
source) and are applied by same-format edges of the source's format that declare ``prepares``.

A user combines one with any target by naming ``TARGET@RECIPE`` (``onnx@prune-structured-30``),
or ``TARGET@R1+R2`` for a chain applied left to right: the changed model is converted like any
source, proven against itself (the conversion's fidelity), and judged against the unchanged source
on the held-out data within the recipe's budget (the accuracy the recipe costs).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import SpecError

TRAIN_KINDS = ("prune-structured", "prune-magnitude", "prune-heads", "distill", "qat")
LOSSES = ("auto", "labels", "kl", "mse", "cosine")


@dataclass(frozen=True)
class Training:
    """How a training recipe changes and trains the model (every setting keys its cached step)."""

    amount: float = 0.3  # pruning: the share of channels (structured), weights (magnitude) or attention heads removed
    ffn_amount: float = 0.0  # prune-heads: also the share of every feed-forward part's neurons removed
    width: float = 1.0  # distill: the student's width as a share of the teacher's channels (1.0: same width)
    # structured pruning / width: kept channel counts are rounded to a multiple of this (CPU kernels run
    # channels in SIMD blocks of 8 or 16: other counts can make a smaller model slower, measured in ORT)
    multiple_of: int = 1
    layers: int = 0  # distill: keep this many of the teacher's repeated blocks, evenly spaced (0: all)
    epochs: int = 10  # at most; training stops earlier when the validation loss stops improving
    patience: int = 3  # epochs without a better validation loss before stopping
    batch: int = 32
    lr: float = 1e-3
    temperature: float = 2.0  # KL on logits: the softening of both distributions
    loss: str = "auto"  # auto: labels where the data has them (pruning), else match the source's outputs
    val_fraction: float = 0.1  # of the training samples, held back to decide when to stop (never evaluation data)
    max_samples: int = 0  # train on at most this many samples (0: all of the data's training split)
    train_embeddings: bool = True  # false: token embedding tables stay as the teacher's (much less to update)
    seed: int = 0
    threads: int = 1  # torch threads while training (a fixed count keeps it reproducible)

    def __post_init__(self):
        for name in ("amount", "ffn_amount"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SpecError(f"training.{name} must be in [0, 1), got {getattr(self, name)}.")
        if not 0.0 < self.width <= 1.0:
            raise SpecError(f"training.width must be in (0, 1], got {self.width}.")
        if self.loss not in LOSSES:
            raise SpecError(f"Unknown training.loss '{self.loss}'.", f"Use one of: {', '.join(LOSSES)}.")
        for name in ("epochs", "batch", "threads", "multiple_of"):
            if getattr(self, name) < 1:
                raise SpecError(f"training.{name} must be >= 1, got {getattr(self, name)}.")
        if not 0.0 < self.val_fraction < 0.5:
            raise SpecError(f"training.val_fraction must be in (0, 0.5), got {self.val_fraction}.")


def is_training(recipe) -> bool:
    return recipe.kind in TRAIN_KINDS


def split_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``onnx@prune-structured-30+distill-half`` -> ("onnx", ("prune-structured-30", "distill-half"))."""
    base, sep, rest = name.partition("@")
    if not sep:
        return name, ()
    return base, tuple(p for p in rest.replace("@", "+").split("+") if p)


def with_prepare(target, chain: tuple[str, ...]):
    """``target`` with the training recipes ``chain`` applied to its source first, renamed
    ``target@r1+r2``; its parity tolerance against the unchanged source becomes the last recipe's
    budget (its smoke floor, which judges the conversion of the changed model, stays the target's)."""
    from .errors import UnknownName, did_you_mean
    from .specs import Tolerance, all_recipes, get_recipe

    if not chain:
        return target
    trained = {n for n, r in all_recipes().items() if is_training(r)}
    for name in chain:
        if name not in trained:
            raise UnknownName(f"'{name}' in target '{target.name}@{'+'.join(chain)}' is no training recipe.",
                              did_you_mean(name, trained) or f"Training recipes: {', '.join(sorted(trained))} "
                                                             "('edgekit recipes' lists them).")
    budget = get_recipe(chain[-1]).budget
    tol = Tolerance(min_cosine=budget.min_cosine if budget and budget.min_cosine is not None else 0.0,
                    max_task_drop=budget.max_task_drop if budget else None,
                    smoke_min_cosine=target.tolerance.smoke_cosine)
    return dataclasses.replace(target, name=f"{target.name}@{'+'.join(chain)}", prepare=tuple(chain), tolerance=tol)
