"""The command line. This is the one place that turns edgekit errors into messages and exit codes."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import EdgekitError


def _add_model_args(p, data_required=False):
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="input signature where the model does not say it, e.g. x:1x3x224x224:float32")
    p.add_argument("--data", required=data_required,
                   help="evaluation (and calibration) data: built-in name (digits, sentences), .npz/.npy, image "
                        "folder, or file.py:callable; 'random' for a smoke run")
    p.add_argument("--calib-data", help="calibration data, if not taken from --data")


def _add_device_args(p, many=False):
    p.add_argument("--device", action="append" if many else "store", default=[] if many else None,
                   help="device name from devices.toml (default: this host, 'local')" +
                        ("; repeat for several devices" if many else ""))
    p.add_argument("--device-wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for a device another run holds (default: fail at once)")


def _add_bench_args(p):
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=30.0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgekit", description="Convert a trained model for the edge, check its "
                                 "accuracy parity and benchmark it on the exact device.")
    ap.add_argument("--version", action="store_true")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("convert", help="convert a model to one target")
    p.add_argument("model")
    p.add_argument("--target", required=True)
    p.add_argument("--out", default="out")
    _add_model_args(p)

    p = sub.add_parser("run", help="convert to several targets, check parity, benchmark, report")
    p.add_argument("model")
    p.add_argument("--targets", default="onnx,onnx-int8,tflite,tflite-int8")
    p.add_argument("--out", default="out")
    p.add_argument("--track", action="store_true", help="log the records to MLflow (one run per target, device)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a local SQLite store in ./mlruns)")
    _add_model_args(p)
    _add_bench_args(p)
    _add_device_args(p, many=True)

    p = sub.add_parser("parity", help="compare an artifact's outputs with the source model's")
    p.add_argument("artifact")
    p.add_argument("--reference", required=True, help="the source model")
    p.add_argument("--target", help="whose tolerance to apply (default: the manifest's target)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(p, data_required=True)
    _add_device_args(p)

    p = sub.add_parser("bench", help="benchmark an artifact on this host")
    p.add_argument("artifact")
    p.add_argument("--data", help="inputs to time with (default: random inputs of the model's signature)")
    p.add_argument("--json", action="store_true")
    _add_bench_args(p)
    _add_device_args(p)

    p = sub.add_parser("devices", help="list, check and set up devices (devices.toml)")
    dsub = p.add_subparsers(dest="devices_cmd", metavar="ACTION", required=True)
    dsub.add_parser("list", help="the devices edgekit knows")
    q = dsub.add_parser("check", help="probe a device: OS, arch, CPU, memory, Python, runtimes")
    q.add_argument("name")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("setup", help="install runtimes on a device (or build the emulated ARM64 root)")
    q.add_argument("name")
    q.add_argument("--runtime", action="append", default=[], choices=["onnxruntime", "tflite", "litert"],
                   help="runtime to install (repeatable; default: onnxruntime and tflite)")

    p = sub.add_parser("sweep", help="models x targets x recipes x devices from a suite file")
    p.add_argument("suite")
    p.add_argument("--workers", choices=["local", "ray"], default="local",
                   help="local processes and threads (default), or a Ray cluster (ray.init())")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a local SQLite store in ./mlruns)")

    p = sub.add_parser("check", help="regression gate: current records against a baseline")
    p.add_argument("--baseline", required=True, help="results.jsonl (or a folder of them) to compare against")
    p.add_argument("current", nargs="?", default="out", help="results.jsonl or folder (default: out/)")
    p.add_argument("--latency-budget", type=float, default=5.0, help="percent p50 may grow (and CIs must part)")
    p.add_argument("--size-budget", type=float, default=1.0, help="percent the artifact may grow")
    p.add_argument("--accuracy-budget", type=float, default=0.5, help="points the task metric may fall")
    p.add_argument("--cosine-budget", type=float, default=0.001, help="how much the worst cosine may fall")

    p = sub.add_parser("fit", help="the best artifact for a device under latency/size/accuracy budgets")
    p.add_argument("model")
    p.add_argument("--targets", default="onnx,onnx-fp16,onnx-int8-dynamic,onnx-int8,tflite,tflite-fp16,"
                                        "tflite-int8-dynamic,tflite-int8")
    p.add_argument("--recipes", default="", help="recipe variants to try too (e.g. int8-static-entropy)")
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--max-size-mb", type=float)
    p.add_argument("--max-accuracy-drop", type=float, help="points of accuracy (cosine floor 0.98 without labels)")
    p.add_argument("--min-cosine", type=float)
    p.add_argument("--out", default="out")
    _add_model_args(p)
    _add_bench_args(p)
    _add_device_args(p)

    p = sub.add_parser("inspect", help="pre-flight: the model's operators and what the target supports")
    p.add_argument("model")
    p.add_argument("--target", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE")

    p = sub.add_parser("report", help="HTML/Markdown/CSV reports (and MLflow runs) from records")
    p.add_argument("records", help="results.jsonl or a folder of them")
    p.add_argument("--out", help="folder for report.html, report.md, results.csv (default: beside the records)")
    p.add_argument("--track", action="store_true", help="also log the records to MLflow")
    p.add_argument("--tracking-uri")

    sub.add_parser("targets", help="list targets: format, recipe, runtime, extra installed?")
    p = sub.add_parser("graph", help="show the conversion plan and why routes were rejected")
    p.add_argument("--from", dest="src", default="torch", help="source format (torch, onnx, savedmodel, keras)")
    p.add_argument("--to", dest="target", help="target name (default: every target)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not args.cmd:
        build_parser().print_help()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return COMMANDS[args.cmd](args)
    except EdgekitError as e:
        print(f"edgekit: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edgekit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a failure no edgekit code described: still one line, unless debugging
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        first = " ".join((str(e).strip().splitlines() or [""])[0].split())[:300]
        print(f"edgekit: error: unexpected {type(e).__name__}" + (f": {first.rstrip('.')}" if first else "")
              + ". Rerun with EDGEKIT_DEBUG=1 to see the traceback, and report it if your model and data are not "
              "the cause.", file=sys.stderr)
        return 70


def _progress(msg: str) -> None:
    print(f"[edgekit] {msg}", file=sys.stderr, flush=True)


def _load(args, need_data: bool):
    from .data import load_data
    from .signature import parse_input_spec
    from .sources import load_source

    specs = [parse_input_spec(s) for s in args.input]
    source = load_source(args.model if hasattr(args, "model") else args.reference, specs or None)
    data = None
    if getattr(args, "data", None):
        data = load_data(args.data, source.inputs)
        data.check_against(source.inputs)
    if getattr(args, "calib_data", None):
        from dataclasses import replace

        cal = load_data(args.calib_data, source.inputs)
        cal.check_against(source.inputs)
        pooled = {k: __import__("numpy").concatenate([cal.calib[k], cal.eval[k]]) for k in cal.calib}
        data = replace(data, calib=pooled) if data is not None else replace(cal, calib=pooled)
    if need_data and data is None:
        from .errors import DataError

        raise DataError("This needs data.", "Pass --data (a built-in name, .npz/.npy, image folder) or --data random "
                        "for a smoke run.")
    return source, data


def cmd_convert(args) -> int:
    from .convert import convert
    from .specs import get_target

    target = get_target(args.target)
    source, data = _load(args, need_data=target.recipe_spec.needs_calibration)
    result = convert(source, target, data, Path(args.out))
    m = result.manifest
    route = " -> ".join(s["edge"] for s in m["route"]) or "(copy)"
    print(f"{result.artifact}  ({m['size_bytes'] / 1024:.1f} KB, {target.name}, route {route}"
          f"{', cached' if result.cached else ''})")
    for f in m["routes_failed"]:
        print(f"  fell back after {f['edge']} failed: {f['error']}")
    return 0


def _bench_opts(args):
    from .pipeline import BenchOptions

    return BenchOptions(args.threads, args.warmup, args.min_runs, args.min_seconds, args.max_seconds)


def cmd_run(args) -> int:
    from .pipeline import run, save_records
    from .report import table
    from .specs import parse_target_list

    targets = parse_target_list(args.targets)
    source, data = _load(args, need_data=True)
    devices = args.device or ["local"]
    records = run(source, data, targets, Path(args.out), _bench_opts(args), devices=devices, progress=_progress,
                  device_wait=args.device_wait)
    paths = save_records(records, Path(args.out))
    print(table(records))
    print()
    for kind, path in paths.items():
        print(f"{kind + ':':9s}{path}")
    if args.track:
        from .tracking import log_records

        res = log_records(records, tracking_uri=args.tracking_uri, artifacts=[paths["html"], paths["markdown"]]
                          if "html" in paths else [])
        print(f"mlflow:  {res.get('tracking_uri')} ({len(res.get('run_ids', []))} runs)"
              + (f" WARNING: {res['warning']}" if res.get("warning") else ""))
    bad = [r for r in records if r.get("status") not in ("ok", "reference")]
    return 1 if bad else 0


def cmd_parity(args) -> int:
    from .pipeline import BenchOptions, manifest_target, measure, runtime_for
    from .reference import reference_for
    from .devices import LocalDevice
    from .specs import Tolerance, get_target

    artifact = Path(args.artifact)
    if not artifact.exists():
        from .errors import SourceNotFound

        raise SourceNotFound(f"Artifact '{artifact}' does not exist.", "Check the path, or run 'edgekit convert'.")
    target = get_target(args.target) if args.target else manifest_target(artifact)
    tolerance = target.tolerance if target else Tolerance()
    args.model = args.reference
    source, data = _load(args, need_data=True)
    ref = reference_for(source, LocalDevice)
    try:
        ref_out = ref.outputs(data.eval)
    finally:
        ref.close()
    from .devices.inventory import using
    from .pipeline import device_record, measure_in
    from .session import RunnerSession

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
    import numpy as np

    from .devices import LocalDevice
    from .pipeline import bench_summary, runtime_for
    from .session import RunnerSession

    artifact = Path(args.artifact)
    if not artifact.exists():
        from .errors import SourceNotFound

        raise SourceNotFound(f"Artifact '{artifact}' does not exist.", "Check the path, or run 'edgekit convert'.")
    opts = _bench_opts(args)
    from .devices.inventory import using

    with using(args.device, args.device_wait) as dev, RunnerSession(dev) as s:
        loaded = s.load(artifact, runtime_for(artifact), threads=opts.threads)
        if args.data:
            from .data import load_data
            from .signature import TensorSpec

            specs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in loaded["inputs"]]
            sample = load_data(args.data, specs).bench_sample()
            synthetic = False
        else:
            rng = np.random.default_rng(0)
            sample = {i["name"]: (rng.standard_normal([d or 1 for d in i["shape"]]).astype(np.float32)
                                  if i["dtype"].startswith("float") else
                                  rng.integers(0, 100, [d or 1 for d in i["shape"]]).astype(i["dtype"]))
                      for i in loaded["inputs"]}
            synthetic = True
        raw = s.bench(sample, **opts.params())
        env = s.env()
    b = bench_summary(raw, opts.threads)
    b.update(load_ms=loaded["load_s"] * 1000, size_bytes=artifact.stat().st_size, runtime=runtime_for(artifact),
             runtime_version=loaded["runtime_version"], env=env, synthetic_inputs=synthetic,
             device=args.device or "local", emulated=dev.emulated)
    if args.json:
        print(json.dumps(b, indent=2))
        return 0
    ci = b["median_ci95_ms"]
    print(f"{artifact}: {b['size_bytes'] / 1024:.1f} KB, {b['runtime']} {b['runtime_version']}, "
          f"{opts.threads} thread(s), {env['cpu']}")
    print(f"  load {b['load_ms']:.1f} ms, first inference {b['first_ms']:.3f} ms, peak RSS {b['peak_rss_mb']:.1f} MB")
    print(f"  p50 {b['p50_ms']:.4f} ms (95% CI {ci[0]:.4f}-{ci[1]:.4f})  p90 {b['p90_ms']:.4f}  p99 {b['p99_ms']:.4f}"
          f"  mean {b['mean_ms']:.4f} ± {b['std_ms']:.4f}  min {b['min_ms']:.4f}  max {b['max_ms']:.4f}  n={b['n']}"
          + ("  [noisy: the machine was busy, rerun]" if b["noisy"] else ""))
    if b["emulated"]:
        print("  EMULATED device: these timings are QEMU's, not the board's speed.")
    return 0


def cmd_targets(args) -> int:
    from .graph import load_converters, plan
    from .specs import all_targets

    load_converters()
    rows = [("target", "format", "recipe", "runtime", "usable here", "description")]
    for t in all_targets().values():
        p = plan("torch", t)
        usable = "yes" if p.usable else "no: " + (p.routes[0].blocked if p.routes else "no route")
        from .lazy import available

        rt_mod = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert"}[t.runtime]
        if not available(rt_mod):
            usable = f"no: runtime needs pip install 'edgekit[{'onnx' if t.runtime == 'onnxruntime' else 'tflite'}]'"
        rows.append((t.name, t.format, t.recipe, t.runtime, usable, t.description))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    return 0


def cmd_graph(args) -> int:
    from .graph import load_converters, plan
    from .specs import all_targets, get_target

    reg = load_converters()
    print("edges:")
    for name, e in reg.items():
        why = e.unavailable()
        print(f"  {name:24s} {e.src:>10s} -> {e.dst:<10s} cost {e.cost:<4} recipes {','.join(sorted(e.recipes))}"
              + (f"   UNAVAILABLE: {why}" if why else ""))
    targets = [get_target(args.target)] if args.target else list(all_targets().values())
    for t in targets:
        p = plan(args.src, t, reg)
        print(f"\n{args.src} -> {t.name} ({t.format}, recipe {t.recipe}):")
        if not p.routes:
            print("  no route")
        for i, r in enumerate(p.routes):
            mark = "PLAN " if i == 0 and r.blocked is None else ("then " if r.blocked is None else "  x  ")
            print(f"  {mark} cost {r.cost:<4} {r}" + (f"\n         rejected: {r.blocked}" if r.blocked else ""))
    return 0


def cmd_devices(args) -> int:
    from .devices.inventory import get_spec, inventory_path, load_inventory

    if args.devices_cmd == "list":
        where = inventory_path()
        print(f"devices ({where or 'no devices.toml found; only this host'}):")
        for spec in load_inventory().values():
            addr = f"{spec.user + '@' if spec.user else ''}{spec.host}:{spec.port}" if spec.kind == "ssh" else ""
            labels = ", ".join(f"{k}={v}" for k, v in spec.labels.items())
            print(f"  {spec.name:16s} {spec.kind:11s} {addr:28s} {labels}")
        return 0
    if args.devices_cmd == "check":
        from .devices.probe import probe

        info = probe(get_spec(args.name))
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"{args.name} ({info['kind']}{', emulated' if info['emulated'] else ''}): {info['os']} {info['arch']}, "
              f"{info['cpu']} x{info['cpu_count']}, {info['mem_total_kb'] / 1024 / 1024:.1f} GiB, "
              f"Python {info['python']} ({info['python_path']}), numpy {info['numpy']}")
        for rt in ("onnxruntime", "litert"):
            v = info["runtimes"].get(rt)
            print(f"  {rt:12s} {v or 'not installed: edgekit devices setup ' + args.name + ' --runtime ' + rt}")
        return 0
    from .devices.setup import setup

    result = setup(get_spec(args.name), args.runtime or ["onnxruntime", "tflite"], progress=_progress)
    print(json.dumps(result, indent=2))
    return 0


def cmd_sweep(args) -> int:
    from dataclasses import replace

    from .report import table
    from .sweep import load_suite, run_sweep

    suite = load_suite(Path(args.suite))
    if args.no_tracking or args.tracking_uri:
        suite = replace(suite, tracking=not args.no_tracking, tracking_uri=args.tracking_uri or suite.tracking_uri)
    result = run_sweep(suite, workers=args.workers)
    print(table(result["records"]))
    print(f"\nrecords: {result['results']}")
    for kind, path in result["reports"].items():
        print(f"{kind + ':':9s}{path}")
    if result["tracking"]:
        print(f"mlflow:  {result['tracking'].get('tracking_uri')} (parent run {result['tracking'].get('parent_run_id')})")
    bad = [r for r in result["records"] if r.get("status") not in ("ok", "reference")]
    return 1 if bad else 0


def cmd_check(args) -> int:
    from .gate import Budgets, compare, format_result, load

    budgets = Budgets(args.latency_budget / 100, args.size_budget / 100, args.accuracy_budget, args.cosine_budget)
    res = compare(load(args.baseline), load(args.current), budgets)
    print(format_result(res))
    if res.compared == 0:
        from .errors import DataError

        raise DataError("No (model, target, device) is in both the baseline and the current records.",
                        "Compare records of the same models, targets and devices.")
    return 0 if res.passed else 1


def cmd_fit(args) -> int:
    from .fit import Budget, explain, judge
    from .pipeline import run
    from .specs import parse_target_list
    from .sweep import expand_targets

    budget = Budget(args.max_latency_ms, args.max_size_mb, args.max_accuracy_drop, args.min_cosine)
    if all(v is None for v in (budget.max_latency_ms, budget.max_size_mb, budget.max_accuracy_drop,
                                budget.min_cosine)):
        from .errors import UserError

        raise UserError("fit needs at least one budget.", "Pass --max-latency-ms, --max-size-mb or --max-accuracy-drop.")
    names = [t.name for t in parse_target_list(args.targets)]
    targets = expand_targets(names, [r for r in args.recipes.split(",") if r])
    source, data = _load(args, need_data=True)
    device = args.device or "local"
    records = run(source, data, targets, Path(args.out), _bench_opts(args), devices=[device], progress=_progress,
                  device_wait=args.device_wait)
    from .pipeline import save_records

    save_records(records, Path(args.out))
    winner, cands, closest = judge(records, budget)
    print(explain(winner, cands, closest, budget, device))
    return 0 if winner else 1


def cmd_inspect(args) -> int:
    from .preflight import format_preflight, inspect_model
    from .signature import parse_input_spec
    from .sources import load_source
    from .specs import get_target

    target = get_target(args.target)
    source = load_source(args.model, [parse_input_spec(s) for s in args.input] or None)
    result = inspect_model(source, target)
    print(json.dumps(result, indent=2) if args.json else format_preflight(result))
    return 0 if not result["verdict"].startswith("will fail") else 1


def cmd_report(args) -> int:
    from .gate import load
    from .report import write_reports
    from .sweep import _latest_per_key

    records = _latest_per_key(load(args.records))
    src = Path(args.records)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    paths = write_reports(records, out, src.stem)
    for kind, path in paths.items():
        print(f"{kind + ':':9s}{path}")
    if args.track:
        from .tracking import log_records

        res = log_records(records, tracking_uri=args.tracking_uri, artifacts=list(paths.values()))
        print(f"mlflow:  {res}")
    return 0


COMMANDS = {"convert": cmd_convert, "run": cmd_run, "parity": cmd_parity, "bench": cmd_bench,
            "targets": cmd_targets, "graph": cmd_graph, "devices": cmd_devices, "sweep": cmd_sweep,
            "check": cmd_check, "fit": cmd_fit, "inspect": cmd_inspect, "report": cmd_report}
