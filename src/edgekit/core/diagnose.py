"""``edgekit diagnose``: walk the route to a quantized target up to its last (quantizing) edge, through
the conversion cache, and let that edge say where its quantization loses accuracy, layer by layer.
The result goes to OUT/MODEL/diagnosis/TARGET/: diagnosis.json, diagnosis.md, diagnosis.html."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .artifacts import atomic_dir
from .convert import run_edge
from .diagnosis import Diagnosis
from .errors import ConversionError, EdgekitError, MissingExtra, NoRoute
from .graph import Artifact, ConvertContext, plan
from .specs import Target


def diagnose(source, target: Target, data, out_root: Path = Path("out"), sensitivity: int = 8) -> tuple[Diagnosis, Path]:
    """The diagnosis of ``target``'s quantization of ``source`` on ``data`` and the folder it was written to."""
    recipe = target.recipe_spec
    if recipe.kind not in ("int8-static", "int8-dynamic"):
        raise ConversionError(target.name, f"its recipe '{recipe.name}' does not quantize to int8: nothing to "
                              "diagnose.", "Diagnose an int8 target ('edgekit targets' lists each target's recipe).")
    if data is None or not data.n_calib:
        raise ConversionError(target.name, "diagnosis compares the float and the int8 model on samples, and no data "
                              "was given.", "Pass --data.")
    the_plan = plan(source.format, target, source=source)
    failures = []
    for route in the_plan.usable:
        last = route.edges[-1] if route.edges else None
        if last is None or last.diagnose is _base_diagnose():
            failures.append(f"{route.names[-1] if route.edges else 'copy'}: cannot diagnose")
            continue
        art = Artifact(source.format, source.digest, source.path, source.obj)
        try:
            for edge in route.edges[:-1]:
                art, _ = run_edge(edge, art, ConvertContext(target, None, source, data))
            ctx = ConvertContext(target, recipe, source, data)
            with tempfile.TemporaryDirectory(prefix="edgekit-diagnose-") as work:
                d = last().diagnose(art, Path(work), ctx, sensitivity)
        except (ConversionError, MissingExtra) as e:
            failures.append(f"{getattr(e, 'edge', last.name())}: {getattr(e, 'reason', e.message)}")
            continue
        except EdgekitError:
            raise
        return d, write(d, Path(out_root) / source.name / "diagnosis" / target.name)
    raise NoRoute(f"No route to '{target.name}' can be diagnosed here: " + ("; ".join(failures) or
                  "no usable route") + ".", "Run 'edgekit graph --to " + target.name + "' to see the routes.")


def _base_diagnose():
    from .graph import Converter

    return Converter.diagnose


def write(d: Diagnosis, folder: Path) -> Path:
    from ..reports.diagnosis import diagnosis_html, diagnosis_markdown

    with atomic_dir(folder) as tmp:
        d.save(tmp / "diagnosis.json")
        (tmp / "diagnosis.md").write_text(diagnosis_markdown(d))
        (tmp / "diagnosis.html").write_text(diagnosis_html(d))
    return folder


def blame(source, target: Target, data, out_root: Path) -> str:
    """For a quantized target that failed parity: one clause naming the layer where int8 loses most
    (the quick diagnosis, written beside the model's reports), or "" when it cannot be said."""
    if target.recipe_spec.kind not in ("int8-static", "int8-dynamic") or data is None or not data.n_calib:
        return ""
    try:
        d, folder = diagnose(source, target, data, out_root, sensitivity=0)
    except EdgekitError:
        return ""
    worst = d.ranked()[0] if d.layers else None
    if worst is None or worst.added <= 0:
        return ""
    first = d.first_crossing()
    where = f"; first past the tolerance: {first.name}" if first is not None and first.name != worst.name else ""
    return (f"int8 loses most at layer {worst.name} ({worst.op}, error {worst.error_in:.2f} -> {worst.error_out:.2f})"
            f"{where}; 'edgekit diagnose' for the rest (diagnosis/{target.name}/)")
