"""The command line's grammar: every command, every option, with its help text."""
from __future__ import annotations

import argparse

MODEL_HELP = ("the model: a model file or folder, or file.py:callable / pkg.module:callable that builds one "
              "('edgekit graph' lists the formats edgekit reads)")


def _add_out(p, default: str | None = "out", what: str = "artifacts, records and reports"):
    p.add_argument("-o", "--out", default=default, metavar="DIR",
                   help=f"folder for the {what} (default: {default or 'beside the records'})")


def _add_model_args(p, data_required=False):
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="input signature where the model does not say it, e.g. x:1x3x224x224:float32 ('?' or a name "
                        "for a dynamic dim); repeat per input")
    p.add_argument("--data", required=data_required, metavar="DATA",
                   help="evaluation (and calibration) data: built-in name (digits, sentences), .npz/.npy, image "
                        "folder, or file.py:callable; 'random' for a smoke run. Arrays hold samples along the "
                        "model's axis 0, or stacked on a new leading axis (one rank more)")
    p.add_argument("--calib-data", metavar="DATA", help="calibration data, if not taken from --data")


def _add_option_args(p):
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="set a target option for this command, e.g. trials=64 (a tuning budget): it goes to the "
                        "targets that set it already, else to those whose backend declares it; repeat per option")
    _add_calibration_args(p)


def _add_calibration_args(p):
    p.add_argument("--calibration", action="append", default=[], metavar="KEY=VALUE",
                   help="change the static int8 targets' calibration: method=minmax|entropy|percentile, "
                        "percentile=99.99, per_channel=true|false, symmetric=true|false (activations), samples=N; "
                        "each changed target is named TARGET@CHOICES; repeat per setting")


def _add_budget_args(p):
    p.add_argument("--max-latency-ms", type=float, metavar="MS", help="latency budget: p50 in milliseconds")
    p.add_argument("--max-size-mb", type=float, metavar="MB", help="size budget in megabytes")
    p.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                   help="points of accuracy the artifact may lose (a cosine floor of 0.98 without labels)")
    p.add_argument("--min-cosine", type=float, help="cosine floor of the worst output against the source")


def _add_device_args(p, many=False):
    p.add_argument("--device", action="append" if many else "store", default=[] if many else None, metavar="NAME",
                   help="device name from devices.toml (default: this host, 'local')" +
                        ("; repeat for several devices" if many else ""))
    p.add_argument("--device-wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for a device another run holds (default: fail at once)")


def _add_workers_arg(p):
    p.add_argument("--workers", choices=["local", "ray"], default="local",
                   help="where training recipes (TARGET@RECIPE) run: this host (default), or as Ray tasks "
                        "(RAY_ADDRESS joins a cluster, else a local one)")


def _add_bench_args(p):
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1: comparable across devices)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
    p.add_argument("--min-runs", type=int, default=50, help="timed runs at least (default 50)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="time for at least this long (default 1 s)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="stop timing after this long (default 30 s)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgekit", description="Convert a trained model for the edge, check its "
                                 "accuracy parity and benchmark it on the exact device.")
    ap.add_argument("--version", action="store_true", help="print edgekit's version")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("convert", help="convert a model to one target (and prove the artifact runs)")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--target", required=True, help="the target ('edgekit targets' lists them)")
    _add_out(p, what="artifact and its manifest (OUT/MODEL/TARGET/)")
    _add_model_args(p)
    _add_option_args(p)
    _add_device_args(p)
    _add_workers_arg(p)

    p = sub.add_parser("run", help="convert to several targets, check parity, benchmark, report")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--targets", help="comma-separated targets (default: the targets marked for 'run')")
    _add_out(p)
    p.add_argument("--track", action="store_true", help="log the records to MLflow (one run per target, device)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a local SQLite store in ./mlruns)")
    p.add_argument("--best", action="store_true",
                   help="also name the fastest artifact that meets the budgets below (default budget: cosine >= "
                        "0.99); without --targets, every target marked for 'fit' (the accuracy-aware int8 ones too)")
    _add_budget_args(p)
    _add_model_args(p)
    _add_option_args(p)
    _add_bench_args(p)
    _add_device_args(p, many=True)
    _add_workers_arg(p)

    p = sub.add_parser("parity", help="compare an artifact's outputs with the source model's")
    p.add_argument("artifact", help="the converted model (a file or folder edgekit wrote)")
    p.add_argument("--reference", required=True, help="the source model (" + MODEL_HELP.split(": ", 1)[1])
    p.add_argument("--target", help="whose tolerance to apply (default: the manifest's target)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_model_args(p, data_required=True)
    _add_device_args(p)

    p = sub.add_parser("bench", help="benchmark an artifact (latency p50/p90/p99, load time, peak memory)")
    p.add_argument("artifact", help="the converted model (a file or folder edgekit wrote)")
    p.add_argument("--data", help="inputs to time with (default: random inputs of the model's signature)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_bench_args(p)
    _add_device_args(p)

    p = sub.add_parser("devices", help="list, check and set up devices (devices.toml)")
    dsub = p.add_subparsers(dest="devices_cmd", metavar="ACTION", required=True)
    dsub.add_parser("list", help="the devices edgekit knows")
    q = dsub.add_parser("check", help="probe a device: OS, arch, CPU, memory, Python, runtimes")
    q.add_argument("name", help="device name from devices.toml")
    q.add_argument("--json", action="store_true", help="print the probe as JSON")
    q = dsub.add_parser("setup", help="install runtimes on a device (or build the emulated ARM64 root)")
    q.add_argument("name", help="device name from devices.toml")
    q.add_argument("--runtime", action="append", default=[], metavar="RUNTIME",
                   help="runtime (or backend, e.g. the name of a target family) to install; repeatable; default: "
                        "every runtime; 'edgekit targets' shows which runtime each target uses")

    p = sub.add_parser("golden", help="golden files: a model's outputs on held-out data, to check artifacts against "
                                      "where the training framework is not installed")
    gsub = p.add_subparsers(dest="golden_cmd", metavar="ACTION", required=True)
    q = gsub.add_parser("record", help="run the source model on held-out samples; write inputs, outputs, labels and "
                                       "a manifest into a folder to commit")
    q.add_argument("model", help=MODEL_HELP)
    q.add_argument("--data", required=True, metavar="DATA",
                   help="the data whose held-out (evaluation) samples are recorded: built-in name, .npz/.npy, image "
                        "folder, or file.py:callable")
    q.add_argument("-o", "--out", required=True, metavar="FOLDER", help="the golden folder to write (replaced if it "
                                                                        "holds golden files)")
    q.add_argument("--samples", type=int, metavar="N", help="held-out samples to keep (default: all, at most 1000)")
    q.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="input signature where the model does not say it")
    q = gsub.add_parser("check", help="run an artifact on a device on the golden inputs; compare with the golden "
                                      "outputs (exit 1 on a parity failure)")
    q.add_argument("artifact", help="the converted model (a file or folder edgekit wrote)")
    q.add_argument("folder", help="the golden folder ('edgekit golden record' wrote it)")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_device_args(q)

    p = sub.add_parser("sweep", help="models x targets x recipes x devices from a suite file")
    p.add_argument("suite", help="the suite file (TOML: models, targets, recipes, devices)")
    _add_out(p, default=None, what="records and reports (default: the suite's 'out', else out/sweep)")
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
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--targets", help="candidate targets (default: the targets marked for 'fit')")
    p.add_argument("--recipes", default="", help="recipe variants to try too (e.g. int8-static-entropy); training "
                   "recipes ('edgekit recipes': prune-structured-30, distill-half-width, ...) are tried on every "
                   "candidate target and need --allow-training")
    p.add_argument("--allow-training", action="store_true",
                   help="let fit try training recipes: they train the model on the data's training split, which "
                        "costs training time (seconds for a small CNN, minutes for a transformer; cached after)")
    _add_budget_args(p)
    p.add_argument("--fallback", action="store_true",
                   help="also pick a fallback: the fastest artifact on a different runtime that meets every budget "
                        "(exit 1 if there is none)")
    p.add_argument("--bundle", metavar="PATH",
                   help="where to write the deployment bundle naming the primary (and fallback) artifact "
                        "(default: OUT/MODEL/deployment.json)")
    _add_out(p)
    _add_model_args(p)
    _add_bench_args(p)
    _add_device_args(p)
    _add_workers_arg(p)

    p = sub.add_parser("diagnose", help="where int8 loses accuracy: every layer's error against the float model, "
                                        "the worst layers, and what keeping each float buys back")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--target", required=True, help="an int8 target ('edgekit targets' lists them with their recipes)")
    p.add_argument("--sensitivity", type=int, default=8, metavar="K",
                   help="re-quantize with each of the K worst layers alone kept float (default 8; 0: skip)")
    p.add_argument("--top", type=int, default=12, help="layers shown in the table (default 12)")
    _add_out(p, what="diagnosis (OUT/MODEL/diagnosis/TARGET/)")
    _add_model_args(p, data_required=True)
    _add_calibration_args(p)

    p = sub.add_parser("inspect", help="pre-flight: the model's operators and what each target's route supports")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--target", help="one target (default: every target, as a matrix)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="input signature where the model does not say it")

    p = sub.add_parser("report", help="HTML/Markdown/CSV reports (and MLflow runs) from records")
    p.add_argument("records", help="results.jsonl or a folder of them")
    _add_out(p, default=None, what="report.html, report.md, results.csv")
    p.add_argument("--track", action="store_true", help="also log the records to MLflow")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a local SQLite store in ./mlruns)")

    p = sub.add_parser("setup", help="complete an install: the pip steps a backend cannot declare as dependencies")
    p.add_argument("backend", nargs="*", help="backends to set up (default: all)")
    p.add_argument("--check", action="store_true", help="only say what is missing (exit 1 if anything is)")
    p.add_argument("--force", action="store_true", help="reinstall steps that look installed")

    sub.add_parser("targets", help="list targets: backend, format, recipe, runtime, usable here?")
    sub.add_parser("recipes", help="list recipes: what each does and the sources or targets it applies to "
                                   "(training recipes combine with any target as TARGET@RECIPE)")
    p = sub.add_parser("graph", help="show the conversion plan and why routes were rejected")
    p.add_argument("--from", dest="src", help="source format (default: each format a source can be given in)")
    p.add_argument("--to", dest="target", help="target name (default: every target)")
    return ap
