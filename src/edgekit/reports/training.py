"""report.md's section on training recipes (``TARGET@RECIPE``): what each recipe changed and how
training went (the source-vs-changed comparison on the training data's validation part), and, per
target, the changed artifact against the same target without the recipe in this run: size, p50 and
accuracy side by side, saying plainly where a recipe made the artifact no smaller or no faster."""
from __future__ import annotations

from .fmt import ms_text


def training_section(records) -> list[str]:
    changed = [r for r in records if r.extra.get("prepared") and not r.is_source]
    if not changed:
        return []
    out = ["## Training recipes", "", "Recipes that change the model before conversion (`TARGET@RECIPE`); they "
           "train on the data's training split, never on the held-out samples the table is measured on.", ""]
    said = set()
    for r in changed:
        for p in r.extra["prepared"]:
            if p["recipe"] in said:
                continue
            said.add(p["recipe"])
            v = p.get("validation") or {}
            line = (f"- **{p['recipe']}** ({p['kind']}): {p['parameters_before']:,} → {p['parameters_after']:,} "
                    f"parameters; {p['epochs_run']} epochs ({p['loss']} loss, best epoch {p['best_epoch']}"
                    f"{', stopped early on a plateau' if p.get('stopped_early') else ''}, "
                    f"{p['train_seconds']:.1f} s) on {p['data']}; on its {v.get('samples')} validation samples "
                    f"the changed model's cosine to the source is {v.get('cosine_mean', 0):.4f}")
            if v.get("student_accuracy") is not None:
                line += f", accuracy {100 * v['student_accuracy']:.2f}% vs {100 * v['teacher_accuracy']:.2f}%"
            if p.get("sparsity") is not None:
                line += f"; {100 * p['sparsity']:.0f}% of the weights are zero"
            out.append(line + ".")
            if p.get("note"):
                out.append(f"  - note: {p['note']}.")
    out += ["", "| target | without the recipe | size | p50 ms | accuracy (Δ pts) |", "|---|---|---|---|---|"]
    by_key = {(r.target, r.device_name): r for r in records}
    for r in changed:
        base = by_key.get((r.target.split("@")[0], r.device_name))
        if base is None or not base.size_bytes or not r.size_bytes:
            continue
        size = f"{r.size_bytes / base.size_bytes:.2f}x" + ("" if r.size_bytes < 0.98 * base.size_bytes
                                                          else " (**no smaller**)")
        speed = "-"
        if r.p50_ms and base.p50_ms:
            speed = f"{ms_text(r.p50_ms)} vs {ms_text(base.p50_ms)}" + (
                "" if r.p50_ms < 0.95 * base.p50_ms else " (**no faster**)")
        acc = "-" if r.task_value is None else f"{100 * r.task_value:.2f}% ({r.task_delta:+.2f})"
        out.append(f"| {r.target} | {base.target} | {size} | {speed} | {acc} |")
    return out + [""]
