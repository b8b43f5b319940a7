"""Apply a target's training recipes (``TARGET@RECIPE``, core/training.py) to the source before any
route is walked: each is a same-format step of the graph (an edge that ``prepares``), run and
cached like every step (keyed by its input model, the recipe's settings and the training data),
and the changed model becomes the source the target's route converts.

With ``--workers ray`` each step runs as a Ray task (core/remote.py).

Each step leaves ``training.json`` beside the model it wrote: what was changed and how training
went (parameters before and after, epochs, losses, the source-vs-changed comparison on the
training data's validation part). The manifest and the records carry it as ``prepared``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import ConversionError, DataError, MissingExtra

SUMMARY = "training.json"


def training_edge(fmt: str, recipe, registry: dict | None = None):
    """The edge that applies training recipe ``recipe`` to a model of format ``fmt``."""
    from .graph import load_converters

    registry = registry if registry is not None else load_converters()
    edges = [e for e in registry.values() if e.prepares and e.src == fmt and recipe.kind in e.recipes]
    if not edges:
        kinds = sorted({f"{e.src} ({', '.join(sorted(e.recipes))})" for e in registry.values() if e.prepares})
        raise ConversionError(recipe.name, f"no edge applies a '{recipe.kind}' recipe to a {fmt} model.",
                              f"Training recipes apply to: {'; '.join(kinds) or 'no format here'}.")
    return min(edges, key=lambda e: e.cost)


def prepare(source, target, data) -> tuple[object, list, list[dict]]:
    """(the changed source, its steps, a summary per recipe); the source itself when the target has none."""
    if not target.prepare:
        return source, [], []
    from .convert import run_edge
    from .graph import Artifact, ConvertContext
    from .remote import current_workers, ray_runner
    from .specs import get_recipe

    if data is None:
        raise DataError(f"target '{target.name}' trains the model on data ({', '.join(target.prepare)}).",
                        "Pass --data (its training or calibration split is trained on, never its held-out samples).")
    art = Artifact(source.format, source.digest, source.path, source.obj)
    current, steps, summaries = source, [], []
    for i, name in enumerate(target.prepare):
        recipe = get_recipe(name)
        edge = training_edge(current.format, recipe)
        missing = edge.missing()
        if missing:
            raise MissingExtra(missing[0], missing[1], f"Training recipe '{name}'")
        runner = None
        if current_workers() == "ray":  # --workers ray: the training runs as a Ray task (core/remote.py)
            runner = ray_runner(edge, source, art, art.path if i else None)
        art, step = run_edge(edge, art, ConvertContext(target, recipe, current, data), runner)
        steps.append(step)
        summary = json.loads((Path(art.path).parent / SUMMARY).read_text())
        summaries.append({"recipe": name, "kind": recipe.kind, "edge": edge.name(), "cached": step.cached,
                          "settings": dataclasses.asdict(recipe.training), **summary})
        chain = "+".join(target.prepare[:i + 1])
        current = dataclasses.replace(current, spec=f"{source.spec}@{chain}", digest=art.digest, obj=art.obj,
                                      path=None, size_bytes=summary.get("weights_bytes", current.size_bytes))
    return current, steps, summaries
