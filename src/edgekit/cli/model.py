"""CLI commands on one model: convert, run, parity, bench, inspect, and the listings (targets, graph)."""
from __future__ import annotations

import json
from pathlib import Path

from .app import _bench_opts, _load, _progress


def cmd_convert(args) -> int:
    from ..core.convert import convert
    from ..core.specs import get_target

    from ..core.specs import with_calibration, with_options

    target = with_calibration(with_options([get_target(args.target)], args.option), args.calibration)[0]
    source, data = _load(args, need_data=target.recipe_spec.needs_calibration)
    if args.device:
        from ..devices.inventory import using

        with using(args.device, args.device_wait) as device:
            result = convert(source, target, data, Path(args.out), device=device)
    else:
        result = convert(source, target, data, Path(args.out))
    m = result.manifest
    route = " -> ".join(s["edge"] for s in m["route"]) or "(copy)"
    print(f"{result.artifact}  ({m['size_bytes'] / 1024:.1f} KB, {target.name}, route {route}"
          f"{', cached' if result.cached else ''})")
    for f in m["routes_failed"]:
        print(f"  fell back after {f['edge']} failed: {f['error']}")
    proof = m.get("proof") or {}
    if proof.get("proven"):
        worst = proof["worst_output"]
        print(f"  proven: loads in {proof['runtime']} {proof.get('runtime_version') or ''}".rstrip()
              + f", smoke cosine {proof['cosine'][worst]:.6f} (floor {proof['min_cosine']:g}) on {proof['samples']}")
    elif proof:
        print(f"  NOT PROVEN: {proof['why']}")
    return 0


def cmd_run(args) -> int:
    from ..core.pipeline import run, save_records
    from ..reports import table
    from ..core.specs import default_targets, parse_target_list, with_calibration, with_options

    chosen = parse_target_list(args.targets) if args.targets else default_targets("fit" if args.best else "run")
    targets = with_calibration(with_options(chosen, args.option), args.calibration)
    source, data = _load(args, need_data=True)
    devices = args.device or ["local"]
    records = run(source, data, targets, Path(args.out), _bench_opts(args), devices=devices, progress=_progress,
                  device_wait=args.device_wait)
    paths = save_records(records, Path(args.out))
    print(table(records))
    print()
    for kind, path in paths.items():
        print(f"{kind + ':':10s}{path}")
    if args.track:
        from ..reports import log_records

        res = log_records(records, tracking_uri=args.tracking_uri, artifacts=[paths["html"], paths["markdown"]]
                          if "html" in paths else [])
        print(f"mlflow:   {res.get('tracking_uri')} ({len(res.get('run_ids', []))} runs)"
              + (f" WARNING: {res['warning']}" if res.get("warning") else ""))
    # validated where its runtime cannot run (parity needs its device): not a failure of this run
    bad = [r for r in records if r.get("status") not in ("ok", "reference", "needs_device")]
    if args.best:
        from ..core.fit import Budget, explain, judge

        budget = Budget(args.max_latency_ms, args.max_size_mb, args.max_accuracy_drop, args.min_cosine)
        if all(v is None for v in (budget.max_latency_ms, budget.max_size_mb, budget.max_accuracy_drop,
                                    budget.min_cosine)):
            budget = Budget(None, None, None, 0.99)
            print("\n--best with no budget given: cosine >= 0.99 to the source")
        for device in devices:
            winner, cands, closest = judge([r for r in records if r.get("device", {}).get("name", device) == device
                                            or r.get("status") == "reference"], budget)
            print()
            print(explain(winner, cands, closest, budget, device, None, False))
    return 1 if bad else 0


def cmd_parity(args) -> int:
    from ..core.pipeline import manifest_target, runtime_for
    from ..core.reference import reference_for
    from ..devices import LocalDevice
    from ..core.specs import Tolerance, get_target

    artifact = Path(args.artifact)
    if not artifact.exists():
        from ..core.errors import SourceNotFound

        raise SourceNotFound(f"Artifact '{artifact}' does not exist.", "Check the path, or run 'edgekit convert'.")
    target = get_target(args.target) if args.target else manifest_target(artifact)
    tolerance = target.tolerance if target else Tolerance()
    args.model = args.reference
    source, data = _load(args, need_data=True)
    ref = reference_for(source, LocalDevice)
    try:
        ref_out = ref.outputs(data.eval, data.stacked)
    finally:
        ref.close()
    from ..devices.inventory import using
    from ..core.pipeline import device_record, measure_in
    from ..core.session import RunnerSession

    with using(args.device, args.device_wait) as device, RunnerSession(device) as session:
        rec = measure_in(session, artifact, runtime_for(artifact), data, ref_out, tolerance, bench=None)
        rec["device"] = device_record(device, session.env())
    p = rec["parity"]
    if args.json:
        print(json.dumps(dict(p, device=rec["device"]), indent=2))
    else:
        print(f"device {rec['device']['name']}: {rec['device']['probe'].get('cpu')} ({rec['device']['probe'].get('arch')})"
              + (" [emulated]" if rec["device"]["emulated"] else ""))
        for o in p["outputs"]:
            print(f"{o['name']}: cosine {o['cosine_mean']:.6f} (min {o['cosine_min']:.6f}), max abs "
                  f"{o['max_abs']:.3e}, mean abs {o['mean_abs']:.3e}, rel L2 {o['rel_l2']:.3e}"
                  + (f", top-1 agreement {o['top1_agreement']:.4f}" if o.get("top1_agreement") is not None else ""))
        if p.get("task_value") is not None:
            print(f"{p['task_metric']}: {100 * p['task_value']:.2f}% (source {100 * p['task_source']:.2f}%, "
                  f"{p['task_delta_points']:+.2f} points) on {p['n']} held-out samples")
        print("parity: " + ("PASSED" if p["passed"] else "FAILED: " + "; ".join(p["failures"]))
              + (f" (tolerance of target '{target.name}')" if target else " (default tolerance)"))
    return 0 if p["passed"] else 1


def cmd_bench(args) -> int:

    from ..core.pipeline import bench_summary, runtime_for
    from ..core.session import RunnerSession

    artifact = Path(args.artifact)
    if not artifact.exists():
        from ..core.errors import SourceNotFound

        raise SourceNotFound(f"Artifact '{artifact}' does not exist.", "Check the path, or run 'edgekit convert'.")
    opts = _bench_opts(args)
    from ..devices.inventory import using

    with using(args.device, args.device_wait) as dev, RunnerSession(dev) as s:
        loaded = s.load(artifact, runtime_for(artifact), threads=opts.threads)
        from ..core.data import load_data, random_dataset
        from ..core.signature import TensorSpec

        specs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in loaded["inputs"]]
        data = (load_data(args.data, specs) if args.data else random_dataset(specs)).check_against(specs)
        sample, synthetic = data.bench_sample(), data.synthetic
        raw = s.bench(sample, data.stacked, **opts.params())
        env = s.env()
    b = bench_summary(raw, opts.threads)
    b.update(load_ms=loaded["load_s"] * 1000, size_bytes=artifact.stat().st_size, runtime=runtime_for(artifact),
             runtime_version=loaded["runtime_version"], env=env, synthetic_inputs=synthetic,
             device=args.device or "local", emulated=dev.emulated)
    if args.json:
        print(json.dumps(b, indent=2))
        return 0
    from ..reports.fmt import ci_text, ms_text

    ci = b["median_ci95_ms"]
    print(f"{artifact}: {b['size_bytes'] / 1024:.1f} KB, {b['runtime']} {b['runtime_version']}, "
          f"{opts.threads} thread(s), {env['cpu']}")
    print(f"  load {ms_text(b['load_ms'])} ms, first inference {ms_text(b['first_ms'])} ms, "
          f"peak RSS {b['peak_rss_mb']:.1f} MB")
    print(f"  ms: p50 {ms_text(b['p50_ms'])} (95% CI {ci_text(b['p50_ms'], *ci)})  p90 {ms_text(b['p90_ms'])}  "
          f"p99 {ms_text(b['p99_ms'])}  mean {ms_text(b['mean_ms'])} ± {ms_text(b['std_ms'])}  "
          f"min {ms_text(b['min_ms'])}  max {ms_text(b['max_ms'])}  n={b['n']}")
    if b["noisy"]:
        print("  noisy (rerun on a quiet machine): " + "; ".join(b["noisy_why"]))
    if b["emulated"]:
        print("  EMULATED device: these timings are QEMU's, not the board's speed.")
    return 0


def cmd_targets(args) -> int:
    from ..backends import get_format, get_runtime
    from ..core.graph import load_converters, plan
    from ..core.specs import all_targets, target_order

    load_converters()
    rows = [("target", "backend", "format", "recipe", "runtime", "build here", "measure here", "description")]
    for t in sorted(all_targets().values(), key=target_order):
        routes = [p for f in _source_formats() if (p := plan(f, t)).routes]
        usable = [r for p in routes for r in p.usable]
        build = "yes" if usable else "no: " + next((p.routes[0].blocked for p in routes if p.routes), "no route")
        if usable and all(r.on_device for r in usable):
            build = "on the device"
        rt = get_runtime(t.runtime)
        rows.append((t.name, get_format(t.format).backend, t.format, t.recipe, t.runtime, build, _measure_here(t, rt),
                     t.description))
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:7], widths)) + "  " + r[7])
    return 0


def _measure_here(target, rt) -> str:
    """Where a target's artifacts can be run (parity, benchmark): here, or the device they need."""
    import platform

    if not rt.predicts(platform.system()):
        return f"needs {rt.needs_text()}"
    if target.foreign_to(None):
        return f"needs an {target.machine} device"
    if not rt.available():
        return f"no: {rt.install_hint()}"
    return "yes"


def _source_formats() -> list[str]:
    """Formats a user can hand edgekit as a source (those with a loader)."""
    from ..backends import formats

    return [f.name for f in formats().values() if f.loader]


def cmd_graph(args) -> int:
    from ..backends import get_format
    from ..core.graph import load_converters, plan
    from ..core.specs import all_targets, get_target, target_order

    sources = [get_format(args.src).name] if args.src else _source_formats()
    targets = [get_target(args.target)] if args.target else sorted(all_targets().values(), key=target_order)
    reg = load_converters()
    from ..backends import formats

    print("formats:")
    for f in formats().values():
        given = ", ".join([*f.suffixes, *([f"a folder with {f.folder_marker}"] if f.folder_marker else []),
                           *(["file.py:callable"] if f.callable_specs else [])]) or "(made by converters only)"
        print(f"  {f.name:12s} {f.backend:12s} {given}")
    print("edges:")
    for name, e in reg.items():
        why = e.unavailable()
        print(f"  {name:24s} {e.src:>10s} -> {e.dst:<10s} cost {e.cost:<4} recipes {','.join(sorted(e.recipes))}"
              + (" [on device]" if e.on_device else "") + (f"   UNAVAILABLE: {why}" if why else ""))
    for src in sources:
        for t in targets:
            p = plan(src, t, reg)
            if not p.routes and not args.src:
                continue
            print(f"\n{src} -> {t.name} ({t.format}, recipe {t.recipe}):")
            if not p.routes:
                print("  no route")
            for i, r in enumerate(p.routes):
                mark = "PLAN " if i == 0 and r.blocked is None else ("then " if r.blocked is None else "  x  ")
                print(f"  {mark} cost {r.cost:<4} {r}" + (" [on device]" if r.on_device else "")
                      + (f"\n         rejected: {r.blocked}" if r.blocked else ""))
    return 0


def cmd_inspect(args) -> int:
    from ..core.preflight import format_preflight, inspect_model
    from ..core.signature import parse_input_spec
    from ..core.sources import load_source
    from ..core.specs import get_target

    targets = [get_target(args.target)] if args.target else None
    source = load_source(args.model, [parse_input_spec(s) for s in args.input] or None)
    if targets is not None:
        result = inspect_model(source, targets[0])
        print(json.dumps(result, indent=2) if args.json else format_preflight(result))
        return 0 if not result["verdict"].startswith("will fail") else 1
    from ..core.specs import all_targets, target_order

    results = [inspect_model(source, t) for t in sorted(all_targets().values(), key=target_order)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(_matrix(results))
    return 0


def _matrix(results: list[dict]) -> str:
    """Operators x targets: the status each target's route gives each operator, then the verdicts."""
    ops: dict = {}
    for r in results:
        for row in r["ops"]:
            name = f"{row['domain']}::{row['op']}" if row["domain"] else row["op"]
            ops.setdefault(name, {})[r["target"]] = row["status"]
    names = [r["target"] for r in results]
    w = max([len("operator"), *(len(n) for n in ops)])
    cw = [max(len(n), 8) for n in names]
    head = "  ".join(["operator".ljust(w)] + [n.ljust(c) for n, c in zip(names, cw)]).rstrip()
    lines = [f"{results[0]['model']} ({results[0]['source_format']}): operators by target (ok | float | fallback"
             f" | fail; - not inspected)", head]
    for op, by in ops.items():
        lines.append("  ".join([op.ljust(w)] + [by.get(n, "-").ljust(c) for n, c in zip(names, cw)]).rstrip())
    lines.append("")
    for r in results:
        lines.append(f"{r['target']:{max(cw)}s}  {r['verdict']}")
    return "\n".join(lines)
