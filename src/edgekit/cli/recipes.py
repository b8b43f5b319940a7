"""``edgekit recipes``: every recipe, what it does, and where it applies."""
from __future__ import annotations

import textwrap


def cmd_recipes(args) -> int:
    from ..core.graph import load_converters
    from ..core.specs import all_recipes, all_targets
    from ..core.training import is_training

    registry = load_converters()
    rows = []
    for r in sorted(all_recipes().values(), key=lambda r: (is_training(r), r.name)):
        if is_training(r):
            fmts = sorted({e.src for e in registry.values() if e.prepares and r.kind in e.recipes})
            where = f"sources: {', '.join(fmts) or 'none here'}; targets: any, as TARGET@{r.name}"
        else:
            names = sorted(t.name for t in all_targets().values() if t.recipe == r.name)
            where = f"targets: {', '.join(names)}" if names else "targets: none by default (a suite's recipes = [...])"
        rows.append((r.name, r.kind, where, r.description))
    width = max(len(r[0]) for r in rows)
    kind_w = max(len(r[1]) for r in rows)
    for name, kind, where, desc in rows:
        print(f"{name.ljust(width)}  {kind.ljust(kind_w)}  {where}")
        for line in textwrap.wrap(desc, 100):
            print(" " * (width + kind_w + 4) + line)
    print("\nTraining recipes train the model on the data's training split (never its held-out samples): they cost "
          "training time on the first run and are cached after it.")
    return 0
