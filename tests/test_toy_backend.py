"""A third-party backend, installed from its own package (tests/toy_backend: an entry point in the
group ``edgekit.backends``), goes through convert, parity, bench, run and the reports with no
change to edgekit: the plug-in interface is the whole interface."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.onnx
TOY = Path(__file__).parent / "toy_backend"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy")
    pkg, site = tmp / "pkg", tmp / "site"
    shutil.copytree(TOY, pkg)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(site), str(pkg)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (site / "edgekit_toy" / "backend.toml").exists()
    assert any(site.glob("edgekit_toy-*.dist-info/entry_points.txt"))
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], "linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = tmp / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    data = tmp / "data.npz"
    np.savez(data, x=rng.standard_normal((200, 8)).astype(np.float32))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               EDGEKIT_CACHE=str(tmp / "cache"))
    return {"tmp": tmp, "env": env, "model": model, "data": data, "w": w, "b": b, "out": tmp / "out"}


def edgekit(toy, *args, plugin=True):
    env = toy["env"] if plugin else dict(toy["env"], PYTHONPATH="")
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env,
                          cwd=toy["tmp"], timeout=600)


def test_the_plugin_is_listed_with_its_targets(toy):
    r = edgekit(toy, "targets")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert rows["toy"][1:5] == ["toy", "toyjson", "none", "toyrt"] and rows["toy"][5] == "yes"
    assert {"toy-fp16", "toy-device", "onnx"} <= set(rows)
    r = edgekit(toy, "graph", "--from", "onnx", "--to", "toy-device")
    assert "ToyjsonFromOnnx, ToyjsonBuiltOnDevice" in r.stdout and "[on device]" in r.stdout
    r = edgekit(toy, "convert", str(toy["model"]), "--target", "toy", plugin=False)
    assert r.returncode == 2 and "Unknown target 'toy'" in r.stderr


def test_convert_parity_bench_through_the_plugin(toy):
    out = toy["out"]
    r = edgekit(toy, "convert", str(toy["model"]), "--target", "toy-fp16", "--out", str(out))
    assert r.returncode == 0, r.stderr
    art = out / "linear" / "toy-fp16" / "model.toyjson"
    manifest = json.loads((art.parent / "manifest.json").read_text())
    assert manifest["route"][0]["edge"] == "ToyjsonFromOnnx" and manifest["options"] == {"decimals": 3}
    w = np.asarray(json.loads(art.read_text())["w"])
    np.testing.assert_allclose(w, np.round(w, 3), atol=1e-6)  # the target's option reached the converter
    assert 1e-5 < np.abs(w - toy["w"]).max() < 2e-3

    r = edgekit(toy, "parity", str(art), "--reference", str(toy["model"]), "--data", str(toy["data"]), "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["passed"] and 0.999 < p["outputs"][0]["cosine_min"] < 1.0

    r = edgekit(toy, "bench", str(art), "--json", "--min-runs", "20", "--min-seconds", "0.05")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["runtime"] == "toyrt" and b["n"] >= 20 and b["p50_ms"] > 0
    assert b["runtime_version"] == "hello from the toy backend"  # the runtime's env reached its worker


def test_run_and_reports_with_an_on_device_edge(toy):
    out = toy["tmp"] / "run"
    r = edgekit(toy, "convert", str(toy["model"]), "--target", "toy-device", "--out", str(out))
    assert r.returncode != 0 and "--device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = edgekit(toy, "run", str(toy["model"]), "--targets", "onnx,toy,toy-device", "--data", str(toy["data"]),
                "--out", str(out), "--min-runs", "10", "--min-seconds", "0.05", "--device", "local")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(x) for x in (out / "linear" / "results.jsonl").read_text().splitlines()]
    status = {x["target"]: x["status"] for x in rows}
    assert status == {"source": "reference", "onnx": "ok", "toy": "ok", "toy-device": "ok"}
    built = out / "linear" / "toy-device@local"
    data = json.loads((built / "model.toyjson").read_text())
    assert data["device"] == "local" and data["built_for"]
    assert json.loads((built / "manifest.json").read_text())["built_on_device"].startswith("local/")
    html = (out / "linear" / "report.html").read_text()
    assert "toy-device" in html and "toyrt" in html
