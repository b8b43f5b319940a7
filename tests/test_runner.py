"""The runner as a child process: protocol, crash isolation, hang timeout, peak memory."""
import os
import signal
import time

import numpy as np
import pytest

from edgekit.devices import LocalDevice
from edgekit.core.errors import RunnerError
from edgekit.core.session import RunnerSession

pytestmark = pytest.mark.onnx


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("m") / "mm.onnx"
    onnx.save(model, str(path))
    return path


def test_infer_bench_env(onnx_model):
    x = np.random.default_rng(0).standard_normal((130, 4)).astype(np.float32)
    with LocalDevice() as dev, RunnerSession(dev) as s:
        info = s.load(onnx_model, "onnxruntime")
        assert info["inputs"][0]["name"] == "x" and info["outputs"] == ["y"]
        assert info["batch_limit"] is None
        out = s.infer({"x": x})
        np.testing.assert_allclose(out["y"], x @ np.arange(12, dtype=np.float32).reshape(4, 3), rtol=1e-5)
        b = s.bench({"x": x[:1]}, warmup=1, min_runs=10, min_seconds=0.01)
        assert len(b["times_s"]) >= 10 and b["peak_rss_kb"] >= b["rss_start_kb"] > 0
        env = s.env()
        assert env["cpu_count"] >= 1 and "onnxruntime" in env["runtimes"]
        assert s.proc.pid != os.getpid()


def test_runtime_error_is_reported_not_raised_in_worker(onnx_model):
    with LocalDevice() as dev, RunnerSession(dev) as s:
        s.load(onnx_model, "onnxruntime")
        with pytest.raises(RunnerError, match="failed while running inference"):
            s.infer({"x": np.zeros((2, 5), np.float32)})  # wrong width
        # the worker survives a failed request
        assert s.infer({"x": np.zeros((2, 4), np.float32)})["y"].shape == (2, 3)


def test_crashing_runner_is_a_runner_error(onnx_model):
    with LocalDevice() as dev:
        s = RunnerSession(dev)
        s.load(onnx_model, "onnxruntime")
        os.kill(s.proc.pid, signal.SIGSEGV)
        with pytest.raises(RunnerError, match=r"crashed \(exit code -11\)"):
            s.infer({"x": np.zeros((1, 4), np.float32)})


def test_hanging_runner_times_out(onnx_model):
    with LocalDevice() as dev:
        s = RunnerSession(dev, timeout=1.0)
        os.kill(s.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(RunnerError, match="did not answer within 1 s"):
            s.env()
        assert time.monotonic() - t0 < 5
        s.proc.wait(timeout=5)  # it was killed


def test_corrupt_artifact_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + b"\0" * 20)
    with LocalDevice() as dev, RunnerSession(dev) as s:
        with pytest.raises(RunnerError, match="loading bad.tflite"):
            s.load(bad, "litert")


def test_input_names_are_matched_exactly_before_loosely():
    from edgekit.runner.runtime_base import lookup_input

    feed = {"x": 1, "x_mask": 2}
    assert lookup_input(feed, "serving_default_x_mask:0") == 2
    assert lookup_input(feed, "serving_default_x:0") == 1
    assert lookup_input({"input_ids": 3}, "input_ids_1") == 3
    with pytest.raises(KeyError):
        lookup_input({"a": 1, "b": 2}, "c")
