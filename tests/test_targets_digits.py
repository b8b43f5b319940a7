"""Each target end to end on the digits CNN: convert, run in the runner process, parity, bench."""
import numpy as np
import pytest

from edgekit.core.convert import convert
from edgekit.core.pipeline import BenchOptions, measure
from edgekit.core.specs import get_target

ONNX_TARGETS = ["onnx", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8"]
TFLITE_TARGETS = ["tflite", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"]
QUICK = BenchOptions(threads=1, warmup=2, min_runs=20, min_seconds=0.05, max_seconds=5)


def _params():
    return [pytest.param(t, marks=pytest.mark.onnx) for t in ONNX_TARGETS] + \
           [pytest.param(t, marks=pytest.mark.tflite) for t in TFLITE_TARGETS]


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    return tmp_path_factory.mktemp("out")


@pytest.mark.parametrize("name", _params())
def test_target_end_to_end(name, digits_source, digits_data, digits_reference, out_root):
    target = get_target(name)
    result = convert(digits_source, target, digits_data, out_root)
    assert result.artifact.exists() and result.artifact.suffix == target.extension
    m = result.manifest
    assert m["target"] == name and m["source"]["sha256"] == digits_source.digest
    assert m["size_bytes"] == result.artifact.stat().st_size
    if target.recipe_spec.needs_calibration:
        assert m["data"]["calibration_samples"] == 300 and m["data"]["evaluation_samples"] == 450
    rec = measure(result.artifact, target.runtime, digits_data, digits_reference, target.tolerance, bench=QUICK)
    p = rec["parity"]
    assert p["passed"], p["failures"]
    assert p["n"] == 450
    # int8 within 1 point of fp32 on held-out data; float targets essentially equal
    assert abs(p["task_delta_points"]) <= 1.0
    assert p["task_source"] > 0.95
    b = rec["bench"]
    assert b["n"] >= 20 and 0 < b["p50_ms"] <= b["p90_ms"] <= b["p99_ms"] <= b["max_ms"]
    assert b["peak_rss_mb"] > 10 and rec["load_s"] > 0
    assert rec["device"]["probe"]["arch"]
    sizes = {"fp16": 0.7, "int8-dynamic": 0.5, "int8-static": 0.5}
    if target.recipe in sizes:
        fp32 = convert(digits_source, get_target(target.format), digits_data, out_root)
        assert result.manifest["size_bytes"] < sizes[target.recipe] * fp32.manifest["size_bytes"]


@pytest.mark.tflite
@pytest.mark.parametrize("name,io", [("tflite-int8", "float32"), ("tflite-int8-io", "int8")])
def test_tflite_int8_is_full_integer(name, io, digits_source, digits_data, out_root):
    from edgekit.backends.tflite.kernels import float_kernels, io_types, kernels

    art = convert(digits_source, get_target(name), digits_data, out_root).artifact
    ks = kernels(art)
    assert float_kernels(art) == []
    compute = [k for k in ks if k["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    assert any(k["op"] == "CONV_2D" for k in compute)
    for k in compute:
        assert all(t in ("int8", "int32") for t in k["outputs"]), k
    assert io_types(art) == {"inputs": [io], "outputs": [io]}
    # and the float model really is float: the check can fail
    assert float_kernels(convert(digits_source, get_target("tflite"), digits_data, out_root).artifact)


@pytest.mark.onnx
def test_onnx_int8_is_quantized(digits_source, digits_data, out_root):
    import onnx

    art = convert(digits_source, get_target("onnx-int8"), digits_data, out_root).artifact
    ops = [n.op_type for n in onnx.load(str(art)).graph.node]
    assert ops.count("QuantizeLinear") >= 5 and "Conv" in ops
    inits = onnx.load(str(art)).graph.initializer
    assert any(i.data_type == onnx.TensorProto.INT8 for i in inits)


@pytest.mark.onnx
def test_repeat_convert_is_cached_and_fast(digits_source, digits_data, out_root):
    import time

    convert(digits_source, get_target("onnx-int8"), digits_data, out_root)
    t0 = time.perf_counter()
    again = convert(digits_source, get_target("onnx-int8"), digits_data, out_root)
    assert again.cached and time.perf_counter() - t0 < 1.0
    assert all(s["cached"] for s in again.manifest["route"])


@pytest.mark.onnx
def test_calibration_and_eval_are_disjoint(digits_data):
    cal = {a.tobytes() for a in digits_data.calib["x"]}
    ev = {a.tobytes() for a in digits_data.eval["x"]}
    assert len(cal) > 250 and len(ev) > 400
    assert not cal & ev
    assert np.isfinite(digits_data.eval["x"]).all()
