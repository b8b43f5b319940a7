"""Data for any input layout: samples along the model's own axis 0, or stacked on a new leading
axis for inputs without a batch axis (a recurrent state, a scalar), decided by rank alone and said."""
import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.core.data import split_arrays
from edgekit.core.errors import ShapeMismatch
from edgekit.core.signature import TensorSpec

pytestmark = pytest.mark.onnx


def test_layout_is_decided_by_rank():
    state = TensorSpec("state", (2, 1, 8))
    assert state.layout(np.zeros((16, 2, 1, 8), np.float32)) == "stacked"
    assert state.layout(np.zeros((6, 1, 8), np.float32)) == "batch"  # concatenated on the model's axis 0
    assert TensorSpec("sr", ()).layout(np.zeros(5, np.float32)) == "stacked"
    assert TensorSpec("x", (None, 8)).layout(np.zeros((5, 8), np.float32)) == "batch"
    with pytest.raises(ShapeMismatch, match=r"axis 2: 3 != 1.*\[N, 2, 1, 8\] \(samples stacked on a new axis\)"):
        state.layout(np.zeros((16, 2, 3, 8), np.float32))
    with pytest.raises(ShapeMismatch, match="rank 3"):
        state.layout(np.zeros((16,), np.float32))
    ds = split_arrays("d", {"state": np.zeros((8, 2, 1, 8), np.float32), "x": np.zeros((8, 8), np.float32)})
    ds = ds.check_against([state, TensorSpec("x", (None, 8))])
    assert ds.stacked == ("state",)
    assert ds.describe_layout([state]) == "state: 8 samples stacked on a new axis, each [2, 1, 8]"


@pytest.fixture(scope="module")
def stateful(tmp_path_factory):
    """A model with inputs of three ranks and no batch axis on two of them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("ReduceMean", ["state"], ["s"], axes=[0, 1], keepdims=0),
             helper.make_node("MatMul", ["s", "w"], ["sw"]),
             helper.make_node("Add", ["xw", "sw"], ["z"]),
             helper.make_node("Mul", ["z", "gain"], ["y"])]
    graph = helper.make_graph(nodes, "stateful",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                               helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 8]),
                               helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w, "w")])
    tmp = tmp_path_factory.mktemp("layout")
    path = tmp / "stateful.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    n = 120
    data = tmp / "data.npz"
    np.savez(data, x=rng.standard_normal((n, 8)).astype(np.float32),  # along the model's axis 0
             state=rng.standard_normal((n, 2, 1, 8)).astype(np.float32),  # stacked
             gain=rng.uniform(0.5, 2.0, n).astype(np.float32))  # a scalar per sample: stacked
    return {"model": path, "data": data, "w": w, "tmp": tmp}


def test_stacked_samples_run_through_convert_parity_and_bench(stateful):
    out = stateful["tmp"] / "out"
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", str(stateful["model"]), "--targets",
                        "onnx,onnx-fp16,onnx-int8", "--data", str(stateful["data"]), "--out", str(out),
                        "--min-runs", "5", "--min-seconds", "0.02"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("data: x: 120 samples along the model's axis 0, each [8]; state: 120 samples stacked on a new axis, "
            "each [2, 1, 8]; gain: 120 samples stacked on a new axis, each []") in r.stderr
    rows = {x["target"]: x for x in map(json.loads, (out / "stateful" / "results.jsonl").read_text().splitlines())}
    for t in ("onnx", "onnx-fp16", "onnx-int8"):
        assert rows[t]["status"] == "ok", rows[t].get("reason")
        assert rows[t]["parity"]["n"] == 30  # the held-out quarter, one sample at a time
    assert rows["onnx"]["parity"]["outputs"][0]["cosine_min"] > 0.9999
    manifest = json.loads((out / "stateful" / "onnx-int8" / "manifest.json").read_text())
    assert manifest["proof"]["proven"] and "calibration samples" in manifest["proof"]["samples"]
