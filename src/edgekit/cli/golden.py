"""CLI commands on golden files: ``golden record`` (where the training framework is) and
``golden check`` (anywhere: numpy, the device and its runtime)."""
from __future__ import annotations

import json
from pathlib import Path

from .app import _progress, check_devices


def cmd_golden(args) -> int:
    return {"record": _record, "check": _check}[args.golden_cmd](args)


def _record(args) -> int:
    from ..core.signature import parse_input_spec
    from ..testing.golden import record_golden

    g = record_golden(args.model, args.data, Path(args.out), args.samples,
                      [parse_input_spec(s) for s in args.input] or None, progress=_progress)
    m = g.manifest
    files = ", ".join(f"{f} ({(g.folder / f).stat().st_size / 1024:.1f} KB)" for f in m["files"])
    print(f"{g.folder}: {g.describe()}")
    print(f"  inputs {', '.join(g.inputs)}; outputs {', '.join(g.outputs)}"
          + ("; labels" if g.labels is not None else "") + f"; files {files} and golden.json")
    print(f"  check an artifact against them: edgekit golden check ARTIFACT {g.folder} [--device NAME]")
    return 0


def _check(args) -> int:
    from ..core.errors import SourceNotFound
    from ..core.pipeline import device_record, manifest_target, runtime_for
    from ..core.session import RunnerSession
    from ..core.specs import Tolerance
    from ..devices.inventory import using
    from ..testing.golden import compare_golden, load_golden

    artifact = Path(args.artifact)
    if not artifact.exists():
        raise SourceNotFound(f"Artifact '{artifact}' does not exist.", "Check the path, or run 'edgekit convert'.")
    check_devices(args)
    golden = load_golden(args.folder)
    target = manifest_target(artifact)
    tolerance = target.tolerance if target else Tolerance()
    runtime = runtime_for(artifact)
    with using(args.device, args.device_wait) as device, RunnerSession(device, runtimes=[runtime]) as session:
        session.load(artifact, runtime)
        outputs = session.infer(golden.inputs, golden.stacked)
        dev = device_record(device, session.env())
    p = compare_golden(golden, outputs, tolerance).to_json()
    if args.json:
        print(json.dumps(dict(p, device=dev, golden=str(golden.folder)), indent=2))
        return 0 if p["passed"] else 1
    print(f"{artifact} on {dev['name']} ({dev['probe'].get('arch')}" + (", EMULATED" if dev["emulated"] else "")
          + f") against {golden.folder}: {golden.describe()}")
    for o in p["outputs"]:
        print(f"  {o['name']}: cosine {o['cosine_mean']:.6f} (min {o['cosine_min']:.6f}), max abs {o['max_abs']:.3e}"
              + (f", top-1 agreement {o['top1_agreement']:.4f}" if o.get("top1_agreement") is not None else ""))
    if p.get("task_value") is not None:
        print(f"  {p['task_metric']}: {100 * p['task_value']:.2f}% (recorded outputs {100 * p['task_source']:.2f}%, "
              f"{p['task_delta_points']:+.2f} points) on {p['n']} samples")
    print("parity: " + ("PASSED" if p["passed"] else "FAILED: " + "; ".join(p["failures"]))
          + (f" (tolerance of target '{target.name}')" if target else " (default tolerance)"))
    return 0 if p["passed"] else 1
