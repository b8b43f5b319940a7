"""The command line. This is the one place that turns edgekit errors into messages and exit codes."""
from __future__ import annotations

import argparse
import os
import sys

from ..core.errors import EdgekitError


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
    _add_device_args(p)

    p = sub.add_parser("run", help="convert to several targets, check parity, benchmark, report")
    p.add_argument("model")
    p.add_argument("--targets", help="comma-separated targets (default: the targets marked for 'run')")
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
    q.add_argument("--runtime", action="append", default=[], metavar="RUNTIME",
                   help="runtime to install (repeatable; default: every runtime; see 'edgekit targets')")

    p = sub.add_parser("sweep", help="models x targets x recipes x devices from a suite file")
    p.add_argument("suite")
    p.add_argument("--workers", choices=["local", "ray"], default="local",
                   help="local processes and threads (default), or a Ray cluster (ray.init())")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a local SQLite store in ./mlruns)")

    p = sub.add_parser("check", help="regression gate: current records against a baseline")
    p.add_argument("--baseline", required=True, help="results.jsonl (or a folder of them) to compare against")
    p.add_argument("current", nargs="?", default="out", help="results.jsonl or folder (default: out/)")
    p.add_argument("--latency-budget", type=float, default=5.0,
                   help="percent p50 may grow (and the 95%% CIs must part)")
    p.add_argument("--size-budget", type=float, default=1.0, help="percent the artifact may grow")
    p.add_argument("--accuracy-budget", type=float, default=0.5, help="points the task metric may fall")
    p.add_argument("--cosine-budget", type=float, default=0.001, help="how much the worst cosine may fall")
    p.add_argument("--remeasure", action="store_true",
                   help="time the baseline's artifact and the current one again, in alternating rounds on the device "
                        "they were measured on, and judge latency on that (load between the two runs cancels out)")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds per artifact with --remeasure")
    p.add_argument("--device-wait", type=float, default=0.0, metavar="SECONDS",
                   help="with --remeasure: wait this long for a device another run holds")

    p = sub.add_parser("fit", help="the best artifact for a device under latency/size/accuracy budgets")
    p.add_argument("model")
    p.add_argument("--targets", help="candidate targets (default: the targets marked for 'fit')")
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

    p = sub.add_parser("setup", help="complete an install: the pip steps a backend cannot declare as dependencies")
    p.add_argument("backend", nargs="*", help="backends to set up (default: all)")
    p.add_argument("--check", action="store_true", help="only say what is missing (exit 1 if anything is)")
    p.add_argument("--force", action="store_true", help="reinstall steps that look installed")

    sub.add_parser("targets", help="list targets: format, recipe, runtime, extra installed?")
    p = sub.add_parser("graph", help="show the conversion plan and why routes were rejected")
    p.add_argument("--from", dest="src", help="source format (default: each format a source can be given in)")
    p.add_argument("--to", dest="target", help="target name (default: every target)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.cmd:
        build_parser().print_help()
        return 0
    from .quiet import quiet_frameworks

    quiet_frameworks()
    try:
        return _command(args.cmd)(args)
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
    from ..core.data import load_data
    from ..core.signature import parse_input_spec
    from ..core.sources import load_source

    specs = [parse_input_spec(s) for s in args.input]
    source = load_source(args.model if hasattr(args, "model") else args.reference, specs or None)
    data = None
    if getattr(args, "data", None):
        data = load_data(args.data, source.inputs).check_against(source.inputs)
        if data.stacked:  # the layout rule's choice is said, never hidden
            _progress(f"data: {data.describe_layout(source.inputs)}")
    if getattr(args, "calib_data", None):
        from ..core.data import with_calibration

        cal = load_data(args.calib_data, source.inputs).check_against(source.inputs)
        data = with_calibration(data, cal, args.calib_data)
    if need_data and data is None:
        from ..core.errors import DataError

        raise DataError("This needs data.", "Pass --data (a built-in name, .npz/.npy, image folder) or --data random "
                        "for a smoke run.")
    return source, data


def _bench_opts(args):
    from ..core.pipeline import BenchOptions

    return BenchOptions(args.threads, args.warmup, args.min_runs, args.min_seconds, args.max_seconds)


COMMANDS = {
    "convert": "model:cmd_convert", "run": "model:cmd_run", "parity": "model:cmd_parity",
    "bench": "model:cmd_bench", "targets": "model:cmd_targets", "graph": "model:cmd_graph",
    "inspect": "model:cmd_inspect", "devices": "devices:cmd_devices", "sweep": "results:cmd_sweep",
    "check": "results:cmd_check", "fit": "results:cmd_fit", "report": "results:cmd_report",
    "setup": "setup:cmd_setup",
}


def _command(name: str):
    import importlib

    module, func = COMMANDS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __package__), func)
