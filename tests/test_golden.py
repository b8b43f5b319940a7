"""Golden files: recorded once from the source model, checked anywhere with numpy and a device
(`edgekit golden record/check`, `assert_golden`); a changed or missing file is named, never used."""
import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.onnx


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A one-Gemm ONNX classifier and an .npz of 200 samples with labels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tmp = tmp_path_factory.mktemp("golden")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"])], "linear",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                          [numpy_helper.from_array(w, "w")])
    model = tmp / "linear.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    x = rng.standard_normal((200, 8)).astype(np.float32)
    data = tmp / "data.npz"
    np.savez(data, x=x, labels=np.argmax(x @ w, axis=1))
    return tmp, model, data


def edgekit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_record_then_check_from_the_command_line(linear, tmp_path):
    tmp, model, data = linear
    folder = tmp_path / "golden"
    r = edgekit("golden", "record", model, "--data", data, "--out", folder, "--samples", "30")
    assert r.returncode == 0, r.stderr
    assert "30 samples of 'data' recorded from" in r.stdout and "edgekit golden check ARTIFACT" in r.stdout
    m = json.loads((folder / "golden.json").read_text())
    assert m["model"] == "linear" and m["inputs"] == [{"name": "x", "shape": ["n", 8], "dtype": "float32"}]
    assert m["data"] == {"name": "data", "samples": 30, "task": "classification", "synthetic": False, "notes": [],
                         "labels": True}
    with np.load(folder / "inputs.npz") as z:
        assert z["x"].shape == (30, 8)
    r = edgekit("golden", "check", model, folder)
    assert r.returncode == 0, r.stderr
    assert "accuracy: 100.00% (recorded outputs 100.00%, +0.00 points) on 30 samples" in r.stdout
    assert r.stdout.strip().endswith("parity: PASSED (default tolerance)")
    r = edgekit("golden", "check", model, folder, "--json")
    assert json.loads(r.stdout)["passed"] is True

    # a golden file changed after recording is refused, by name
    with np.load(folder / "outputs.npz") as z:
        y = {k: z[k] for k in z.files}
    np.savez(folder / "outputs.npz", **{k: v + 1 for k, v in y.items()})
    r = edgekit("golden", "check", model, folder)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"golden file '{folder / 'outputs.npz'}' was changed since it was recorded" in r.stderr
    # recording over a folder that is not a golden one is refused; over a golden one, it is replaced
    r = edgekit("golden", "record", model, "--data", data, "--out", tmp)
    assert r.returncode == 2 and "exists and is not a golden folder" in r.stderr
    r = edgekit("golden", "record", model, "--data", data, "--out", folder)
    assert r.returncode == 0 and "50 samples of 'data'" in r.stdout  # 25% of 200 are held out
    r = edgekit("golden", "check", model, tmp_path / "nothing")
    assert r.returncode == 2 and "holds no golden files (golden.json is missing)" in r.stderr


def test_assert_golden_outside_pytest_fixtures(linear, tmp_path):
    """A plain path on the local device: the library call, no fixture, no records."""
    from edgekit.testing import assert_golden, record_golden

    tmp, model, data = linear
    g = record_golden(str(model), str(data), tmp_path / "g")
    assert g.n == 50 and g.labels is not None and g.task == "classification"
    res = assert_golden(model, g.folder)
    assert res.passed and res.n == 50 and res.outputs[0].max_abs < 1e-5
    with pytest.raises(AssertionError) as e:
        assert_golden(model, g.folder, tolerance={"max_abs": 0.0, "min_cosine": 1.5})
    text = str(e.value)
    assert text.startswith(f"parity FAILED: linear on local against golden files {g.folder} (50 samples of 'data' "
                           "recorded from ")
    assert "failed:    y: cosine 1.00000 < 1.5" in text and "tolerance: min cosine 1.5, max abs 0" in text
