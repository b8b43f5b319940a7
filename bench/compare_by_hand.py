"""edgekit vs the plain library calls a user would write by hand, on the digits CNN, in one run.

For ONNX fp32, ONNX static int8 (ORT quantize_static, QDQ, per-channel), TFLite fp32 and TFLite
full-integer int8 (onnx2tf -> SavedModel -> TFLiteConverter with a representative dataset), it
builds the artifact both ways, times both single-threaded, and prints latency ratios
edgekit / by-hand and edgekit / torch fp32 eager. Ratios near 1.0 mean edgekit adds no cost.

    .venv/bin/python bench/compare_by_hand.py [--seconds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def timeit(fn, seconds: float) -> float:
    """Median latency in ms: warm-up, then runs for ``seconds`` (at least 200)."""
    for _ in range(20):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < 200 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def by_hand(work: Path, calib: np.ndarray, sample: np.ndarray, seconds: float) -> dict:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import digits_cnn

    model, _ = digits_cnn.build()
    x = torch.from_numpy(sample)
    torch.set_num_threads(1)
    with torch.no_grad():
        res = {"torch eager fp32": timeit(lambda: model(x), seconds)}
    onnx_path = work / "hand.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), input_names=["x"], output_names=["output"], dynamo=True,
                      external_data=False)

    def ort_session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    s = ort_session(onnx_path)
    res["onnx"] = timeit(lambda: s.run(None, {"x": sample}), seconds)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            nxt = next(self.it, None)
            return None if nxt is None else {"x": nxt}

    pre = work / "hand-pre.onnx"
    quant_pre_process(str(onnx_path), str(pre))
    q = work / "hand-int8.onnx"
    quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    s = ort_session(q)
    res["onnx-int8"] = timeit(lambda: s.run(None, {"x": sample}), seconds)

    # TFLite by hand: onnx2tf to a SavedModel, then the TFLite converter.
    tf_dir = work / "hand_tf"
    shutil.copyfile(onnx_path, work / "copy.onnx")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    subprocess.run([sys.executable, "-m", "onnx2tf", "-i", str(work / "copy.onnx"), "-o", str(tf_dir), "-osd",
                    "-k", "x", "-n"], check=True, env=env, capture_output=True, cwd=work)
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    def tflite_latency(blob: bytes) -> float:
        path = work / f"hand-{len(blob)}.tflite"
        path.write_bytes(blob)
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]

        def run():
            it.set_tensor(inp["index"], sample)
            it.invoke()
            it.get_tensor(out["index"])
        return timeit(run, seconds)

    conv = tf.lite.TFLiteConverter.from_saved_model(str(tf_dir))
    res["tflite"] = tflite_latency(conv.convert())
    conv = tf.lite.TFLiteConverter.from_saved_model(str(tf_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    res["tflite-int8"] = tflite_latency(conv.convert())
    return res


def through_edgekit(out: Path, seconds: float) -> dict:
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.pipeline import BenchOptions, measure
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    src = load_source(str(ROOT / "examples" / "digits_cnn.py") + ":build")
    data = load_data("digits", src.inputs)
    opts = BenchOptions(threads=1, warmup=20, min_runs=200, min_seconds=seconds, max_seconds=seconds * 5)
    res = {}
    for name in ("onnx", "onnx-int8", "tflite", "tflite-int8"):
        t = get_target(name)
        art = convert(src, t, data, out).artifact
        res[name] = measure(art, t.runtime, data, None, t.tolerance, bench=opts)["bench"]["p50_ms"]
    return res, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per variant and side")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("EDGEKIT_CACHE", str(work / "cache"))
        ek, data = through_edgekit(work / "out", args.seconds)
        calib = data.calib["x"][:200]
        hand = by_hand(work, calib, data.eval["x"][:1], args.seconds)
    torch_ms = hand["torch eager fp32"]
    print(f"\ndigits CNN, batch 1, 1 thread, median latency (torch eager fp32: {torch_ms:.4f} ms)")
    print(f"{'variant':14s} {'edgekit ms':>11s} {'by hand ms':>11s} {'edgekit/hand':>13s} {'edgekit/torch':>14s}")
    for name in ("onnx", "onnx-int8", "tflite", "tflite-int8"):
        print(f"{name:14s} {ek[name]:11.4f} {hand[name]:11.4f} {ek[name] / hand[name]:13.3f} "
              f"{ek[name] / torch_ms:14.3f}")


if __name__ == "__main__":
    main()
