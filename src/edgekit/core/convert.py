"""Walk a plan: run each edge of the cheapest usable route, cache every step's output by the
hash of what went into it, fall back to the next route when an edge fails, and write the
output folder (artifact + manifest.json) atomically."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .artifacts import atomic_dir, cache_root, copy_artifact, size_bytes, write_json
from .errors import ConversionError, EdgekitError, MissingExtra, NoRoute, UnsupportedOperator
from .graph import Artifact, ConvertContext, Plan, plan
from .proof import prove
from .sources import file_digest
from .specs import Target


@dataclass
class ConvertResult:
    target: Target
    artifact: Path
    out_dir: Path
    manifest: dict
    cached: bool = False


@dataclass
class _Step:
    edge: str
    seconds: float
    cached: bool
    versions: dict
    notes: list = field(default_factory=list)


def device_fingerprint(device) -> str:
    """What makes an on-device step's output differ from one device to another."""
    info = device.describe() if hasattr(device, "describe") else None
    fields = [device.name, getattr(device, "kind", "")]
    if info is not None:
        fields += [getattr(info, "os", ""), getattr(info, "arch", "")]
    return "/".join(str(f) for f in fields)


def step_key(edge, artifact: Artifact, ctx: ConvertContext) -> str:
    material = {"edge": edge.name(), "rev": edge.revision, "in": artifact.digest, "versions": edge.versions(),
                # --input may fix a dynamic dim: edges that export or specialize at the declared shapes differ
                "inputs": [(s.name, [d if isinstance(d, int) else None for d in s.shape], s.dtype)
                           for s in ctx.source.inputs]}
    if edge.on_device:
        material["device"] = device_fingerprint(ctx.device)
    if ctx.target.options and ctx.recipe is not None and not edge.prepares:  # a training step serves every target
        material["options"] = ctx.target.options
    if edge.target_options:
        material["target_options"] = {k: ctx.target.options.get(k) for k in edge.target_options}
    extra = edge.key_material(ctx)
    if extra is not None:
        material["edge_material"] = extra
    if ctx.recipe is not None:
        material["recipe"] = repr(ctx.recipe)
        material["io_dtype"] = None if edge.prepares else ctx.target.io_dtype
        if (ctx.recipe.needs_calibration or edge.uses_data) and ctx.data is not None:
            material["calib"] = ctx.data.calib_digest()
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_edge(edge, artifact: Artifact, ctx: ConvertContext, runner=None) -> tuple[Artifact, _Step]:
    """Run ``edge`` (or ``runner``, a stand-in for its ``convert`` that runs it elsewhere) unless cached."""
    if edge.on_device and ctx.device is None:
        raise ConversionError(edge.name(), "runs on the device that will run the artifact, and no device was given.",
                              "Pass --device NAME (a device from devices.toml, or local).")
    key = step_key(edge, artifact, ctx)
    entry = cache_root() / "steps" / key
    meta_path = entry / "step.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        step = _Step(edge.name(), meta["seconds"], True, meta["versions"], meta.get("notes", []))
        return _opened(Artifact(edge.dst, meta.get("digest", key), entry / meta["artifact"])), step
    t0 = time.perf_counter()
    with atomic_dir(entry) as tmp:
        ctx.notes = []
        produced = (runner or edge().convert)(artifact, tmp, ctx)
        seconds = time.perf_counter() - t0
        versions = edge.versions()
        # outputs are named by their content: the same model reached by another route (or given as a
        # file) meets the same cached steps after it
        digest = file_digest(Path(produced)) if Path(produced).exists() else key
        write_json(tmp / "step.json", {"edge": edge.name(), "artifact": Path(produced).name, "seconds": seconds,
                                       "versions": versions, "notes": ctx.notes, "input": artifact.digest,
                                       "digest": digest})
        name = Path(produced).name
    return _opened(Artifact(edge.dst, digest, entry / name)), _Step(edge.name(), seconds, False, versions,
                                                                    list(ctx.notes))


def _opened(art: Artifact) -> Artifact:
    """An edge writes a file even when its format is held live: the next edge gets the object too."""
    from ..backends import backend_of_format, get_format

    fmt = get_format(art.format)
    if not (fmt.live and fmt.opener):
        return art
    obj = backend_of_format(art.format).hook(fmt.opener)(Path(art.path))
    return Artifact(art.format, art.digest, art.path, obj)


def convert(source, target: Target, data=None, out_root: Path = Path("out"), the_plan: Plan | None = None,
            device=None, prove_artifact: bool = True) -> ConvertResult:
    """Produce ``target`` from ``source``: returns the artifact in ``out/<model>/<target>/``
    (``<target>@<device>/`` when a step of its route ran on ``device``, an open device)."""
    from .prepare import prepare
    from .shapes import fixed_from_data

    original = source
    source, prepared_steps, prepared = prepare(source, target, data)  # training recipes: the changed model
    source = fixed_from_data(source, target, data)  # one shape for a static-shape format, from the data
    the_plan = the_plan or plan(source.format, target, source=source)
    recipe = target.recipe_spec
    if recipe.needs_calibration and data is None:
        raise ConversionError(target.name, f"recipe '{recipe.name}' needs calibration data.",
                              "Pass --data or --calib-data.")
    if device is None and the_plan.usable and all(r.on_device for r in the_plan.usable):
        raise ConversionError(the_plan.usable[0].names[-1], f"target '{target.name}' is built on the device that "
                              "will run it, and no device was given.",
                              "Pass --device NAME (a device from devices.toml, or local).")
    attempts = []
    for route in the_plan.usable:
        art = Artifact(source.format, source.digest, source.path, source.obj)
        steps = list(prepared_steps)
        try:
            for i, edge in enumerate(route.edges):
                last = i == route.recipe_index
                # an edge applying no recipe is the same step whether it ends a route or not: share its cache
                ctx = ConvertContext(target, recipe if last and recipe.kind != "none" else None, source, data,
                                     device=device)
                art, step = run_edge(edge, art, ctx)
                steps.append(step)
        except (ConversionError, MissingExtra) as e:
            attempts.append({"route": route.names, "edge": getattr(e, "edge", edge.name()),
                             "error": getattr(e, "reason", e.message), "hint": e.hint,
                             "unsupported_op": getattr(e, "op", None), "node": getattr(e, "node", None)})
            continue
        except EdgekitError:
            raise
        except Exception as e:  # a converter library failed in a way it did not describe
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            attempts.append({"route": route.names, "edge": edge.name(), "error": f"{type(e).__name__}: {first}"})
            continue
        try:  # "converted" only once it loads in its runtime and gives outputs close to the source's
            last = route.names[-1] if route.edges else "copy"
            # a cross-built artifact is proven on the device given for it (it cannot load here)
            where = device if route.on_device or (target.machine and device is not None) else None
            proof = prove(source, target, art.path, data, last, where) if prove_artifact else None
        except ConversionError as e:
            attempts.append({"route": route.names, "edge": e.edge, "error": e.reason, "hint": e.hint,
                             "proof": True})
            continue
        return _write_output(original, target, route, steps, art, attempts, the_plan, data, out_root,
                             device if route.on_device else None, proof, prepared, source.shapes_from_data)
    _raise_no_route(source, target, the_plan, attempts)


def _raise_no_route(source, target, the_plan, attempts):
    if not the_plan.routes:
        raise NoRoute(f"No converter path leads from {source.format} to target '{target.name}'.",
                      "Run 'edgekit graph' to see the graph.")
    if not attempts:
        # the cheapest route that only lacks an installed stack names the extra to install
        for route in the_plan.routes:
            missing = [e.missing() for e in route.edges if e.missing()]
            if missing and not route.edges[-1].refuses(target.recipe_spec, target):
                module, extra = missing[0]
                raise MissingExtra(module, extra, f"Target '{target.name}'")
        reasons = "; ".join(sorted({r.blocked for r in the_plan.routes if r.blocked}))
        raise NoRoute(f"No usable route to '{target.name}' on this host: {reasons}.")
    ops = [a for a in attempts if a.get("unsupported_op")]
    if ops and len(ops) == len(attempts):
        a = ops[0]
        raise UnsupportedOperator(a["edge"], a["unsupported_op"], "every route failed on it", node=a.get("node"))
    reasons = " | ".join(f"{a['edge']}: {a['error']}" for a in attempts)
    hint = next((a["hint"] for a in attempts if a.get("hint")), None)
    err = NoRoute(f"Every route to '{target.name}' failed: {reasons}", hint)
    err.attempts = attempts
    raise err


def _write_output(source, target, route, steps, art: Artifact, attempts, the_plan, data, out_root,
                  device=None, proof=None, prepared=(), shapes_from_data=None) -> ConvertResult:
    out_dir = Path(out_root) / source.name / (target.name + (f"@{device.name}" if device is not None else ""))
    name = "model" + (target.extension or Path(art.path).suffix)
    manifest = {
        "edgekit": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"spec": source.spec, "format": source.format, "sha256": source.digest,
                   "inputs": [s.to_json() for s in source.inputs], "outputs": source.outputs},
        "target": target.name, "format": target.format, "runtime": target.runtime,
        "recipe": _recipe_json(target.recipe_spec), "io_dtype": target.io_dtype,
        "route": [{"edge": s.edge, "seconds": round(s.seconds, 3), "cached": s.cached, "versions": s.versions,
                   "notes": s.notes} for s in steps],
        "routes_skipped": [{"route": r.names, "why": r.blocked} for r in the_plan.routes if r.blocked],
        "routes_failed": attempts,
        "data": None if data is None else _data_json(target, data),
        "artifact": name, "artifact_sha256": art.digest, "host": {"python": platform.python_version(),
                                                                   "machine": platform.machine()},
        "options": dict(target.options),
        # the source's dynamic dimensions, fixed at the data's shapes: the artifact takes only these
        "inputs_fixed_from_data": {k: list(v) for k, v in (shapes_from_data or {}).items()} or None,
        "proof": proof,  # of a prepared target: against the changed model (the conversion's own fidelity)
        "prepared": list(prepared) or None,  # training recipes applied to the source first (core/prepare.py)
        "built_on_device": None if device is None else device_fingerprint(device),
    }
    with atomic_dir(out_dir) as tmp:
        copy_artifact(Path(art.path), tmp / name)
        manifest["size_bytes"] = size_bytes(tmp / name)
        write_json(tmp / "manifest.json", manifest)
    return ConvertResult(target, out_dir / name, out_dir, manifest, bool(steps) and all(s.cached for s in steps))


def calibration_use(target: Target, dataset) -> dict:
    """How many calibration samples the target's recipe takes of the data's (its cap, or none)."""
    recipe = target.recipe_spec
    if not recipe.needs_calibration:
        return {"calibration_used": 0, "calibration_cap": None}
    cap = recipe.calibration.samples
    return {"calibration_used": min(dataset.n_calib, cap), "calibration_cap": cap}


def _data_json(target, data) -> dict:
    """The manifest's data block: the calibration samples the data offered and those the recipe
    took (its cap), in the words of the reports too."""
    from ..reports.fmt import calibration_text

    use = calibration_use(target, data)
    available = data.n_calib if target.recipe_spec.needs_calibration else 0
    return {"name": data.name, "calibration_samples": available, **use,
            "calibration": calibration_text(use["calibration_used"], data.n_calib, use["calibration_cap"]),
            "evaluation_samples": data.n_eval, "synthetic": data.synthetic, "split": data.split}


def _recipe_json(recipe) -> dict:
    from dataclasses import asdict

    return asdict(recipe)
