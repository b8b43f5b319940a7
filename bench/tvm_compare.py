"""Apache TVM through edgekit, single thread, in one run: TVM untuned and MetaSchedule-tuned p50
against ONNX Runtime fp32 and torch eager, for the digits CNN and MiniLM; and, for each TVM module,
edgekit's p50 (its runner's loop: prepared inputs in, outputs back as numpy) against TVM's own
``time_evaluator`` on the same loaded module (goal: within 5%).

Every artifact is built with edgekit (``tvm``, ``tvm-tuned`` on this host, ``onnx``; conversion
and the tuning database are cached, so a second run only measures). Measurements alternate between
the candidates for ``--rounds`` rounds and report the median of the rounds' medians: on a shared,
noisy machine that is fairer than timing one candidate after another.

    .venv/bin/python bench/tvm_compare.py [--trials 512] [--rounds 5] [--seconds 1] [--models digits,minilm]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"digits": ("examples/digits_cnn.py:build", "digits"), "minilm": ("examples/minilm.py:build", "sentences")}


def build(name: str, trials: int, out: Path):
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target
    from edgekit.devices import LocalDevice

    spec, data_name = MODELS[name]
    source = load_source(str(ROOT / spec))
    data = load_data(data_name, source.inputs)
    tuned = get_target("tvm-tuned")
    tuned = dataclasses.replace(tuned, options={**tuned.options, "trials": trials})
    arts = {}
    for target in (get_target("onnx"), get_target("tvm")):
        t0 = time.perf_counter()
        arts[target.name] = convert(source, target, data, out).artifact
        print(f"  {name}: {target.name} ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    t0 = time.perf_counter()
    with LocalDevice() as local:
        res = convert(source, tuned, data, out, device=local)
    info = res.manifest["route"][-1]["notes"]
    print(f"  {name}: tvm-tuned ready ({time.perf_counter() - t0:.0f} s; {'; '.join(info)})", flush=True)
    arts["tvm-tuned"] = res.artifact
    return source, data, arts


def measure(source, data, arts: dict, rounds: int, seconds: float) -> dict:
    """Median over rounds of each candidate's p50 (ms); TVM modules also get time_evaluator's."""
    from edgekit.core.pipeline import runtime_for
    from edgekit.core.reference import reference_for
    from edgekit.core.session import RunnerSession
    from edgekit.devices import LocalDevice

    sample = data.bench_sample()
    params = dict(warmup=5, min_runs=20, min_seconds=seconds, max_seconds=max(30.0, 10 * seconds))
    p50 = {k: [] for k in ["torch eager", *arts]}
    te = {k: [] for k in arts if k.startswith("tvm")}
    ref = reference_for(source, LocalDevice)
    try:
        with LocalDevice() as dev, RunnerSession(dev) as session:
            for r in range(rounds):
                p50["torch eager"].append(_p50(ref.bench(sample, 1, data.stacked, **params)["times_s"]))
                for name, art in arts.items():
                    session.load(art, runtime_for(art), threads=1)
                    raw = session.bench(sample, data.stacked, **params)
                    p50[name].append(_p50(raw["times_s"]))
                    if name in te:
                        te[name].append(raw["runtime_timer"]["p50_ms"])
                print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in p50.items()), flush=True)
    finally:
        ref.close()
    out = {k: float(np.median(v)) for k, v in p50.items()}
    out.update({f"{k} time_evaluator": float(np.median(v)) for k, v in te.items()})
    out["pairs"] = {k: [a / b for a, b in zip(p50[k], te[k])] for k in te}
    return out


def _p50(times_s) -> float:
    return float(np.median(times_s) * 1000.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=None, help="MetaSchedule budget (default: tvm-tuned's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="timing per candidate per round")
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--out", default=str(ROOT / "out" / "tvm-compare"))
    args = ap.parse_args()
    os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    from edgekit.core.specs import get_target

    trials = args.trials or int(get_target("tvm-tuned").option("trials"))
    results = {}
    for name in args.models.split(","):
        print(f"{name}: building (tuning budget {trials} trials; cached after the first run)", flush=True)
        source, data, arts = build(name, trials, Path(args.out))
        print(f"{name}: measuring, single thread, {args.rounds} alternating rounds", flush=True)
        results[name] = measure(source, data, arts, args.rounds, args.seconds)
    print()
    print(f"single thread, p50 ms (median of {args.rounds} alternating rounds); MetaSchedule budget {trials} trials")
    head = f"{'model':8s} {'torch eager':>12s} {'ORT fp32':>10s} {'TVM untuned':>12s} {'TVM tuned':>10s} " \
           f"{'tuned/ORT':>10s} {'tuned/untuned':>14s}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(f"{name:8s} {r['torch eager']:12.3f} {r['onnx']:10.3f} {r['tvm']:12.3f} {r['tvm-tuned']:10.3f} "
              f"{r['tvm-tuned'] / r['onnx']:9.2f}x {r['tvm'] / r['tvm-tuned']:13.1f}x")
    print()
    print("edgekit p50 vs TVM time_evaluator p50 on the same loaded module (goal: within 5%)")
    for name, r in results.items():
        for k in ("tvm", "tvm-tuned"):
            e, t = r[k], r[f"{k} time_evaluator"]
            pairs = r["pairs"][k]
            verdict = "within 5%" if abs(e / t - 1) <= 0.05 else "OUTSIDE 5%"
            print(f"  {name:8s} {k:10s} edgekit {e:10.4f}  time_evaluator {t:10.4f}  ratio {e / t:.3f} ({verdict}; "
                  f"per round {', '.join(f'{x:.3f}' for x in pairs)})")
    print()
    for name, r in results.items():
        verdict = "beats" if r["tvm-tuned"] < r["onnx"] else "does not beat"
        print(f"{name}: tuned TVM ({trials} trials) {verdict} ONNX Runtime fp32: {r['tvm-tuned']:.3f} vs "
              f"{r['onnx']:.3f} ms ({r['tvm-tuned'] / r['onnx']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
