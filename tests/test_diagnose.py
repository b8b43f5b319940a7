"""Int8 that can be diagnosed and repaired (issue 14), on ONNX Runtime: calibration choices reach the
quantizer and the records; ``edgekit diagnose`` finds a planted outlier layer first; the accuracy-aware
recipe keeps exactly that layer float and meets its budget; an edge that cannot honour a choice is
refused by the planner, in one sentence."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLANTED = str(ROOT / "tests" / "models" / "planted_outlier.py") + ":build"
DIGITS = str(ROOT / "examples" / "digits_cnn.py") + ":build"


def edgekit(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, COLUMNS="200"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source

    source = load_source(PLANTED)
    return source, load_data("digits", source.inputs)


def test_planted_outlier_is_found_first_and_keeping_it_float_repairs_int8(planted, tmp_path):
    from edgekit.core.diagnose import diagnose
    from edgekit.core.diagnosis import Diagnosis
    from edgekit.core.specs import get_target

    source, data = planted
    d, folder = diagnose(source, get_target("onnx-int8"), data, tmp_path, sensitivity=3)
    ranked = d.ranked()
    # the second convolution (the one given the outlier channel) adds by far the most error ...
    assert ranked[0].name == "node_conv2d_1" and ranked[0].op.startswith("Conv")
    assert ranked[0].added > 5 * ranked[1].added
    assert d.first_crossing().name == "node_conv2d_1"
    # ... int8 collapses, and keeping that layer (with its output) float alone buys it back
    assert d.cosine < 0.6
    assert ranked[0].cosine_alone_float > 0.999
    assert all(la.cosine_alone_float < 0.9 for la in ranked[1:] if la.cosine_alone_float is not None)
    # the files: JSON round-trips, the report has the table and the plot
    back = Diagnosis.load(folder / "diagnosis.json")
    assert back.ranked()[0].name == "node_conv2d_1" and len(back.layers) == len(d.layers)
    html = (folder / "diagnosis.html").read_text()
    assert "<svg" in html and "node_conv2d_1" in html and "polyline" in html
    assert "| 1 | node_conv2d_1 |" in (folder / "diagnosis.md").read_text()


def test_accuracy_aware_keeps_the_planted_layer_float_and_meets_its_budget(planted, tmp_path):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    source, data = planted
    aware = convert(source, get_target("onnx-int8-accuracy-aware"), data, tmp_path)
    notes = " ".join(aware.manifest["route"][-1]["notes"])
    assert "budget met" in notes and "node_conv2d_1" in notes, notes
    assert aware.manifest["recipe"]["budget"]["min_cosine"] == 0.99
    # judged on the held-out evaluation samples, which the search never saw
    x = data.eval["x"][:200]
    ref = _torch(source, x)
    import re

    full = float(re.search(r"full int8: cosine ([0-9.]+)", notes).group(1))
    assert full < 0.6  # the trap is real for plain static int8
    assert _cos(ref, _ort(aware.artifact, x)) > 0.99


def _torch(source, x):
    import torch

    with torch.no_grad():
        return source.obj(torch.from_numpy(x)).numpy()


def _ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _cos(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_calibration_choices_reach_the_quantizer_and_the_manifest(tmp_path):
    import onnx
    from onnx import numpy_helper

    r = edgekit("convert", DIGITS, "--target", "onnx-int8", "--data", "digits", "-o", str(tmp_path),
                "--calibration", "symmetric=true", "--calibration", "per_channel=false")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "digits_cnn" / "onnx-int8@symmetric+per-tensor"
    m = json.loads((out / "manifest.json").read_text())
    assert m["target"] == "onnx-int8@symmetric+per-tensor"
    assert m["recipe"]["calibration"]["symmetric"] is True and m["recipe"]["calibration"]["per_channel"] is False
    assert any("minmax, per-tensor, symmetric" in n for n in m["route"][-1]["notes"])
    model = onnx.load(str(out / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    scales = [inits[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits]
    assert zps and all(int(np.abs(z).max()) == 0 for z in zps)  # symmetric: every activation's zero point is 0
    assert all(s.size == 1 for s in scales)  # per-tensor: one scale per tensor, weights too


def test_a_choice_no_edge_honours_is_refused_in_one_sentence(tmp_path):
    r = edgekit("convert", DIGITS, "--target", "tflite-int8", "--data", "digits", "-o", str(tmp_path),
                "--calibration", "method=entropy")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "entropy" in r.stderr
    r = edgekit("convert", DIGITS, "--target", "onnx-int8", "--data", "digits", "-o", str(tmp_path),
                "--calibration", "methd=entropy")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--calibration 'methd=entropy'" in r.stderr and "method" in r.stderr
    r = edgekit("convert", DIGITS, "--target", "onnx-fp16", "--data", "digits", "-o", str(tmp_path),
                "--calibration", "method=entropy")
    assert r.returncode != 0 and "static int8" in r.stderr


def test_diagnose_command_on_the_digits_cnn(tmp_path):
    r = edgekit("diagnose", DIGITS, "--target", "onnx-int8", "--data", "digits", "-o", str(tmp_path),
                "--sensitivity", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "first layer past the tolerance" in r.stdout and "cos if float" in r.stdout
    d = json.loads((tmp_path / "digits_cnn" / "diagnosis" / "onnx-int8" / "diagnosis.json").read_text())
    assert d["cosine"] > 0.999 and d["first_crossing"] is None  # a healthy model: nothing crosses
    assert sum(la["cosine_alone_float"] is not None for la in d["layers"]) == 2
    r = edgekit("diagnose", DIGITS, "--target", "onnx-fp16", "--data", "digits", "-o", str(tmp_path))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "int8" in r.stderr
    # the model's report shows the diagnosis (table and plot) beside the run's results
    r = edgekit("run", DIGITS, "--targets", "onnx-int8", "--data", "digits", "-o", str(tmp_path), "--min-runs", "10",
                "--min-seconds", "0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    html = (tmp_path / "digits_cnn" / "report.html").read_text()
    section = html[html.index("<h2>Int8 diagnosis</h2>"):]
    assert "<svg" in section and "cos if float" in section
    assert "## Int8 diagnosis" in (tmp_path / "digits_cnn" / "report.md").read_text()


def test_a_failed_int8_parity_names_the_layer(planted, tmp_path):
    """What `edgekit run` appends to an int8 row that failed parity (the quick diagnosis)."""
    from edgekit.core.diagnose import blame
    from edgekit.core.specs import get_target

    source, data = planted
    why = blame(source, get_target("onnx-int8"), data, tmp_path)
    assert why.startswith("int8 loses most at layer node_conv2d_1 (Conv+Relu"), why
    assert (tmp_path / "planted_outlier" / "diagnosis" / "onnx-int8" / "diagnosis.json").exists()
    assert blame(source, get_target("onnx-fp16"), data, tmp_path) == ""  # not int8: nothing to say
