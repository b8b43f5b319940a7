"""TensorRT: what this host makes for the device (the ONNX model, QDQ for int8, and the build settings),
and the one sentence a device without TensorRT ends with (this host; the SSH test host over a real
connection), never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .sshd_host import sshd_fixture

pytestmark = [pytest.mark.tensorrt, pytest.mark.onnx]
ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"
sshd = sshd_fixture("module")


def _edgekit(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    src = load_source(MODEL)
    data = load_data("digits", src.inputs)
    res = convert(src, get_target("onnx"), data, tmp_path_factory.mktemp("onnx"))
    return load_source(str(res.artifact)), data


def _package(digits_onnx, target_name, tmp_path):
    from edgekit.backends.tensorrt.converters import TrtBuildFromOnnx
    from edgekit.core.graph import Artifact, ConvertContext
    from edgekit.core.specs import get_target

    src, data = digits_onnx
    target = get_target(target_name)
    ctx = ConvertContext(target, None, src, data)
    pkg = TrtBuildFromOnnx().convert(Artifact("onnx", src.digest, src.path), tmp_path, ctx)
    return pkg, json.loads((pkg / "build.json").read_text()), src, data, ctx


def test_int8_package_is_explicitly_quantized_symmetric_and_close(digits_onnx, tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    pkg, build, src, data, ctx = _package(digits_onnx, "tensorrt-int8", tmp_path)
    assert build["precision"] == "int8" and build["trtexec_flags"] == ["--int8", "--fp16"]
    assert [(i["name"], i["shape"], i["dtype"]) for i in build["inputs"]] == [("x", [1, 1, 8, 8], "float32")]
    model = onnx.load(str(pkg / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6  # Q/DQ: no calibrator on the device
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(int(np.abs(z).max()) == 0 for z in zps)  # TensorRT takes zero point 0 only
    assert any("symmetric" in n for n in ctx.notes)
    # the QDQ model the device builds from computes what the source does (ONNX Runtime here)
    x = data.eval["x"][:64]
    ref_s, got_s = ort.InferenceSession(str(src.path)), ort.InferenceSession(str(pkg / "model.onnx"))
    ref = np.concatenate([ref_s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    got = np.concatenate([got_s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97


def test_fp16_package_keeps_the_float_model_and_says_the_flags(digits_onnx, tmp_path):
    from edgekit.backends.tensorrt.trt_device import trtexec_args

    pkg, build, src, _, _ = _package(digits_onnx, "tensorrt-fp16", tmp_path)
    assert build["precision"] == "fp16" and build["trtexec_flags"] == ["--fp16"]
    assert (pkg / "model.onnx").read_bytes() == Path(src.path).read_bytes() or \
        "QuantizeLinear" not in (pkg / "model.onnx").read_bytes().decode("latin1")
    args = trtexec_args("/w/pkg", "/w/m.engine", build)
    assert args[:3] == ["--onnx=/w/pkg/model.onnx", "--saveEngine=/w/m.engine", "--skipInference"]
    assert "--fp16" in args
    dynamic = dict(build, inputs=[dict(i, dynamic=True) for i in build["inputs"]])  # a dynamic batch gets its shape
    assert "--shapes=x:1x1x8x8" in trtexec_args("/w/pkg", "/w/m.engine", dynamic)


def test_asymmetric_int8_is_refused_by_the_planner():
    from edgekit.core.graph import plan
    from edgekit.core.specs import get_target, with_calibration

    target = with_calibration([get_target("tensorrt-int8")], ["symmetric=false"])[0]
    p = plan("torch", target)
    assert not p.usable and "symmetric int8 only" in p.routes[0].blocked


def _one_sentence(stderr: str, device_words: str):
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"edgekit: error: {device_words} has no TensorRT (no trtexec on PATH, no tensorrt "
                               "Python module)"), lines[0]
    assert "TensorRT engines are built on the NVIDIA device that runs them" in lines[0]
    return lines[0]


def test_no_tensorrt_here_is_one_sentence(tmp_path):
    r = _edgekit("convert", MODEL, "--target", "tensorrt-fp16", "--data", "digits", "--device", "local",
                 "--out", str(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_sentence(r.stderr, "this host (device 'local')")
    assert not (tmp_path / "digits_cnn").exists()  # nothing half-written where an artifact goes


@pytest.mark.ssh
def test_no_tensorrt_on_the_ssh_test_host(sshd, tmp_path):
    inv = tmp_path / "devices.toml"
    inv.write_text(sshd.devices_toml("test-host"))
    env = {"EDGEKIT_DEVICES": str(inv)}
    r = _edgekit("convert", MODEL, "--target", "tensorrt-int8", "--data", "digits", "--device", "test-host",
                 "--out", str(tmp_path / "c"), env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    said = _one_sentence(r.stderr, "device 'test-host'")
    assert "pick a target that runs on 'test-host'" in said
    # a run goes on: the other target is measured on the device, the TensorRT row says the sentence
    out = tmp_path / "r"
    r = _edgekit("run", MODEL, "--targets", "tensorrt-fp16,onnx", "--data", "digits", "--device", "test-host",
                 "--out", str(out), "--min-runs", "5", "--min-seconds", "0.05", "--warmup", "1", env=env)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == 1
    rows = {x["target"]: x for x in map(json.loads, (out / "digits_cnn" / "results.jsonl").read_text().splitlines())}
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["device"]["name"] == "test-host"
    trt = rows["tensorrt-fp16"]
    assert trt["status"] == "conversion_failed" and trt["reason"].startswith("device 'test-host' has no TensorRT")
