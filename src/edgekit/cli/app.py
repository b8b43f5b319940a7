"""The command line. This is the one place that turns edgekit errors into messages and exit codes."""
from __future__ import annotations

import os
import sys

from ..core.errors import EdgekitError
from .parser import build_parser


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
    from ..core.terminal import capture, log_path, say

    capture(args.cmd)
    try:
        from ..core.remote import training_workers

        # sweep reads --workers itself; elsewhere it says where training recipes run
        with training_workers(getattr(args, "workers", "local") if args.cmd != "sweep" else "local"):
            return _command(args.cmd)(args)
    except EdgekitError as e:
        log = log_path() if e.exit_code != 2 else None  # a user error needs no framework log
        say(f"edgekit: error: {e.one_line()}" + (f" (framework output: {log})" if log else ""))
        return e.exit_code
    except KeyboardInterrupt:
        say("edgekit: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (edgekit graph | head): nothing to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # a failure no edgekit code described: still one line, unless debugging
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        first = " ".join((str(e).strip().splitlines() or [""])[0].split())[:300]
        log = log_path()
        say(f"edgekit: error: unexpected {type(e).__name__}" + (f": {first.rstrip('.')}" if first else "")
            + ". Rerun with EDGEKIT_DEBUG=1 to see the traceback, and report it if your model and data are not "
            "the cause." + (f" (framework output: {log})" if log else ""))
        return 70


def _progress(msg: str) -> None:
    from ..core.terminal import say

    say(f"[edgekit] {msg}")


def _load(args, need_data: bool):
    from ..core.data import load_data
    from ..core.signature import parse_input_spec
    from ..core.sources import load_source

    check_devices(args)  # every input is checked before any long work
    if need_data and not getattr(args, "data", None) and not getattr(args, "calib_data", None):
        from ..core.errors import DataError

        raise DataError("This needs data" + (f" (target '{args.target}' calibrates on it)" if getattr(
            args, "target", None) else "") + ".", "Pass --data (a built-in name, .npz/.npy, image folder, or "
            "'random' for a smoke run) or --calib-data.")
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


def check_devices(args) -> None:
    """Unknown device names fail now, not after minutes of conversion."""
    names = args.device if isinstance(getattr(args, "device", None), list) else [getattr(args, "device", None)]
    names = [n for n in names if n]
    if names:
        from ..devices.inventory import get_spec

        for name in names:
            get_spec(name)


def _bench_opts(args):
    from ..core.pipeline import BenchOptions

    return BenchOptions(args.threads, args.warmup, args.min_runs, args.min_seconds, args.max_seconds)


COMMANDS = {
    "convert": "model:cmd_convert", "run": "model:cmd_run", "parity": "model:cmd_parity",
    "bench": "model:cmd_bench", "targets": "model:cmd_targets", "recipes": "recipes:cmd_recipes", "graph": "model:cmd_graph",
    "inspect": "model:cmd_inspect", "devices": "devices:cmd_devices", "sweep": "results:cmd_sweep",
    "check": "results:cmd_check", "fit": "results:cmd_fit", "report": "results:cmd_report",
    "setup": "setup:cmd_setup", "golden": "golden:cmd_golden", "diagnose": "diagnose:cmd_diagnose",
}


def _command(name: str):
    import importlib

    module, func = COMMANDS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __package__), func)
