"""TF.js through edgekit, single thread, in one run: p50 latency of the TF.js graph model (``tfjs``
target) in Node.js on the WASM backend, in headless Chromium on WASM and on WebGL (SwiftShader's
software WebGL on a machine without a GPU), against ONNX Runtime fp32 (``onnx`` target), for the
digits CNN and MiniLM. Each measurement also checks parity against the source on the eval set.

Every artifact is built with edgekit (cached: a second run only measures). Measurements alternate
between the candidates for ``--rounds`` rounds and report the median of the rounds' p50s; each
candidate keeps its own runner (and browser) open across rounds. The browser's version and the
backend that actually ran are printed from the runner's answer.

    .venv/bin/python bench/tfjs_compare.py [--rounds 3] [--seconds 1] [--models digits,minilm]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"digits": ("examples/digits_cnn.py:build", "digits"), "minilm": ("examples/minilm.py:build", "sentences")}
# what runs where: ONNX Runtime on this host; the tfjs artifact in Node.js, and in Chromium on two backends
CANDIDATES = ("onnxruntime", "tfjs node-wasm", "tfjs browser-wasm", "tfjs browser-webgl")


def _device(name: str):
    from edgekit.devices import LocalDevice

    if name.startswith("tfjs browser"):
        from edgekit.backends.tfjs.browser_device import BrowserDevice

        return BrowserDevice(name.split()[-1], {"backend": name.split("-")[-1]})
    return LocalDevice()


def build(name: str, out: Path):
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    spec, data_name = MODELS[name]
    source = load_source(str(ROOT / spec))
    data = load_data(data_name, source.inputs)
    arts = {t: convert(source, get_target(t), data, out).artifact for t in ("onnx", "tfjs")}
    return source, data, arts


def measure(source, data, arts: dict, rounds: int, seconds: float) -> dict:
    from edgekit.core.parity import compare
    from edgekit.core.reference import reference_for
    from edgekit.core.session import RunnerSession
    from edgekit.core.specs import get_target
    from edgekit.devices import LocalDevice

    ref = reference_for(source, LocalDevice)
    try:
        expected = ref.outputs(data.eval, data.stacked)
    finally:
        ref.close()
    sessions, info, p50s = {}, {}, {c: [] for c in CANDIDATES}
    try:
        for cand in CANDIDATES:
            target = "onnx" if cand == "onnxruntime" else "tfjs"
            runtime = get_target(target).runtime
            dev = _device(cand)
            try:
                s = RunnerSession(dev, runtimes=[runtime])
                loaded = s.load(arts[target], runtime, threads=1)
            except Exception as e:  # noqa: BLE001  e.g. no WebGL in this browser: say so, go on
                dev.close()
                info[cand] = {"error": str(e)}
                continue
            sessions[cand] = (dev, s)
            p = compare(expected, s.infer(data.eval, data.stacked), get_target(target).tolerance)
            info[cand] = {"version": loaded["runtime_version"], "cosine": p.worst.cosine_mean, "passed": p.passed}
        sample = data.bench_sample()
        for _ in range(rounds):
            for cand, (_, s) in sessions.items():
                raw = s.bench(sample, data.stacked, warmup=5, min_runs=20, min_seconds=seconds, max_seconds=30)
                p50s[cand].append(1000.0 * float(np.median(raw["times_s"])))
    finally:
        for dev, s in sessions.values():
            s.close()
            dev.close()
    return {c: dict(info[c], p50_ms=float(np.median(p50s[c])) if p50s[c] else None) for c in CANDIDATES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench-tfjs"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in args.models.split(","):
        source, data, arts = build(name, Path(args.out))
        res = measure(source, data, arts, args.rounds, args.seconds)
        base = res["onnxruntime"]["p50_ms"]
        print(f"\n{name} (batch {data.bench_sample()[next(iter(data.bench_sample()))].shape[0]}, 1 thread, "
              f"median of {args.rounds} rounds' p50)")
        print(f"  {'candidate':<20} {'p50 ms':>9} {'vs ORT':>8}  {'parity (worst cosine)':<24} runtime")
        for cand, r in res.items():
            if "error" in r:
                print(f"  {cand:<20} {'-':>9} {'-':>8}  {'-':<24} not run: {r['error'][:120]}")
                continue
            ratio = f"{r['p50_ms'] / base:.2f}x" if base and r["p50_ms"] else "-"
            par = f"{r['cosine']:.6f} ({'ok' if r['passed'] else 'FAILED'})"
            print(f"  {cand:<20} {r['p50_ms']:>9.3f} {ratio:>8}  {par:<24} {r['version']}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
