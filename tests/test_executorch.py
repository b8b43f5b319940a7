"""The executorch backend with real components: torch.export lowered with the XNNPACK delegate
(ExecuTorch 1.5.1 beside torch 2.13), static int8 from the XNNPACK quantizer calibrated on the data,
ExecuTorch's Python runtime in the runner; parity and benchmark through `edgekit run`; ONNX sources
through onnx2torch; a missing stack named by the command that installs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.lazy import available
from .cli import edgekit, records

pytestmark = [pytest.mark.executorch,
              pytest.mark.skipif(not available("executorch"), reason="needs ExecuTorch (edgekit setup executorch)")]
ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits_cnn.py") + ":build"
MINILM = str(ROOT / "examples" / "minilm.py") + ":build"
FAST = ["--min-runs", "20", "--min-seconds", "0.2", "--warmup", "2"]


def is_pte(path: Path) -> bool:
    return Path(path).read_bytes()[4:8] == b"ET12"  # the ExecuTorch program's flatbuffer identifier


def test_targets_routes_and_setup():
    from edgekit.core.graph import plan
    from edgekit.core.specs import get_target

    fp32, int8 = get_target("executorch"), get_target("executorch-int8")
    assert (fp32.format, fp32.runtime, fp32.recipe) == ("pte", "executorch", "none")
    assert (int8.recipe_spec.kind, int8.io_dtype) == ("int8-static", "float32")
    assert plan("torch", fp32).usable[0].names == ["PteFromTorch"]
    assert plan("onnx", int8).usable[0].names == ["TorchFromOnnx", "PteFromTorch"]
    # an entropy-calibrated recipe is refused rather than silently calibrated by min/max
    from dataclasses import replace

    entropy = replace(int8, recipe="int8-static-entropy")
    assert entropy.recipe_spec.calibration.method == "entropy" and not plan("torch", entropy).usable
    r = edgekit("setup", "executorch", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = edgekit("targets")
    assert r.returncode == 0 and "executorch-int8" in r.stdout


# ---- the digits CNN: convert, parity, benchmark ------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("et-run")
    r = edgekit("run", DIGITS, "--targets", "onnx,executorch,executorch-int8", "--data", "digits", "--out", str(out),
                *FAST)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, records(out, "digits_cnn")


def test_digits_fp32_and_int8_pass_parity_here(digits_run):
    out, rows = digits_run
    for target, max_drop in (("executorch", 0.5), ("executorch-int8", 1.0)):
        row = rows[(target, "local")]
        assert row["status"] == "ok", (target, row.get("reason"))
        assert row["route"] == ["PteFromTorch"] and row["runtime_version"] == "1.5.1"
        assert row["parity"]["passed"] and row["parity"]["task_delta_points"] >= -max_drop
        assert row["bench"]["p50_ms"] > 0 and row["bench"]["threads"] == 1
        assert is_pte(Path(row["artifact"]))
    fp32, int8 = rows[("executorch", "local")], rows[("executorch-int8", "local")]
    assert int8["size_bytes"] < 0.5 * fp32["size_bytes"]  # int8 weights
    assert fp32["parity"]["task_delta_points"] == 0
    notes = [n for s in json.loads((out / "digits_cnn" / "executorch-int8" / "manifest.json").read_text())["route"]
             for n in s["notes"]]
    assert any("XNNPACK quantizer" in n and "200 of 300 calibration samples" in n for n in notes), notes
    assert any("1 delegated subgraph(s); nothing left outside it" in n for n in notes), notes
    ort = rows[("onnx", "local")]["bench"]["p50_ms"]
    print(f"\ndigits p50 ms: onnxruntime {ort:.4f}, executorch {fp32['bench']['p50_ms']:.4f}, "
          f"executorch-int8 {int8['bench']['p50_ms']:.4f}; .pte {fp32['size_bytes']} / {int8['size_bytes']} bytes")


def test_the_pte_file_itself_runs_through_parity_and_bench(digits_run, tmp_path):
    """A .pte given by path is recognised and run by its runtime (no conversion)."""
    out, rows = digits_run
    pte = Path(rows[("executorch-int8", "local")]["artifact"])
    r = edgekit("parity", str(pte), "--reference", DIGITS, "--data", "digits")
    assert r.returncode == 0 and "passed" in r.stdout.lower(), r.stdout + r.stderr
    r = edgekit("bench", str(pte), *FAST)
    assert r.returncode == 0 and "executorch" in r.stdout, r.stdout + r.stderr


# ---- the runner on programs edgekit did not write, and inputs by name -------------------------------

def test_a_program_without_signature_gets_its_method_metadata(tmp_path):
    """A .pte from plain ExecuTorch calls (no edgekit signature method): inputs named input_N with the
    shapes and dtypes of the method's metadata; int64 inputs pass through as int64."""
    import torch
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.backends.executorch.rt_executorch import ExecuTorchModel

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)

        def forward(self, ids, scale):
            return self.emb(ids) * scale

    torch.manual_seed(0)
    module = Embed().eval()
    ids, scale = torch.tensor([[1, 2, 3]]), torch.full((1, 3, 4), 2.0)
    program = to_edge_transform_and_lower(torch.export.export(module, (ids, scale))).to_executorch()
    (tmp_path / "m.pte").write_bytes(program.buffer)
    model = ExecuTorchModel(str(tmp_path / "m.pte"), 1)
    assert model.input_specs() == [{"name": "input_0", "shape": [1, 3], "dtype": "int64"},
                                   {"name": "input_1", "shape": [1, 3, 4], "dtype": "float32"}]
    got = model.run(model.prepare({"input_0": ids.numpy(), "input_1": scale.numpy()}))
    np.testing.assert_allclose(got["output_0"], module(ids, scale).detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="exported for \\[1, 3\\]"):
        model.prepare({"input_0": np.zeros((1, 5), np.int64), "input_1": scale.numpy()})


# ---- ONNX sources through onnx2torch ------------------------------------------------------------------

@pytest.mark.skipif(not available("onnx2torch"), reason="onnx2torch is not installed (edgekit setup torch)")
def test_onnx_source_reaches_executorch(tmp_path):
    r = edgekit("convert", DIGITS, "--target", "onnx", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    onnx_file = tmp_path / "a" / "digits_cnn" / "onnx" / "model.onnx"
    r = edgekit("graph", "--from", "onnx", "--to", "executorch")
    assert "TorchFromOnnx, PteFromTorch" in r.stdout, r.stdout
    r = edgekit("convert", str(onnx_file), "--target", "executorch-int8", "--data", "digits",
                "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / "b" / "model" / "executorch-int8"
    m = json.loads((folder / "manifest.json").read_text())
    assert [s["edge"] for s in m["route"]] == ["TorchFromOnnx", "PteFromTorch"]
    assert m["proof"]["proven"] and min(m["proof"]["cosine"].values()) > 0.99
    assert is_pte(folder / "model.pte")
    r = edgekit("parity", str(folder / "model.pte"), "--reference", str(onnx_file), "--data", "digits")
    assert r.returncode == 0, r.stdout + r.stderr


# ---- a missing stack ------------------------------------------------------------------------------------

def test_missing_stack_names_the_setup_command(tmp_path):
    """In a Python where executorch cannot be imported (as before `edgekit setup executorch`)."""
    code = ("import sys\nsys.modules['executorch'] = None\nfrom edgekit.cli.app import main\n"
            f"sys.exit(main(['convert', {DIGITS!r}, '--target', 'executorch', '--out', {str(tmp_path / 'o')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "'executorch'" in lines[0] and "pip install 'edgekit[executorch]' && edgekit setup executorch" in lines[0]
    assert not (tmp_path / "o" / "digits_cnn" / "executorch").exists()


# ---- MiniLM (slow) --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_minilm(tmp_path):
    r = edgekit("run", MINILM, "--targets", "onnx,executorch,executorch-int8", "--data", "sentences",
                "--out", str(tmp_path / "out"), *FAST, timeout=5400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = records(tmp_path / "out", "minilm")
    for target in ("executorch", "executorch-int8"):
        row = rows[(target, "local")]
        assert row["status"] == "ok" and row["parity"]["passed"], (target, row.get("reason"), row.get("parity"))
        print(f"\nminilm {target}: p50 {row['bench']['p50_ms']:.2f} ms, {row['size_bytes']} bytes, "
              f"convert {row.get('convert_s')} s")
    print(f"minilm onnx p50 {rows[('onnx', 'local')]['bench']['p50_ms']:.2f} ms")


# ---- the torch-free runtime (executorch-numpy-runtime, Python >= 3.12) ----------------------------------

def _python312():
    """A Python >= 3.12 interpreter that runs (executorch-numpy-runtime requires it), or None."""
    import glob
    import shutil

    found = [shutil.which(f"python3.{m}") for m in range(12, 15)]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for py in filter(None, found):
        r = subprocess.run([py, "-c", "import sys; assert sys.version_info >= (3, 12)"], capture_output=True)
        if r.returncode == 0:
            return py
    return None


@pytest.mark.skipif(_python312() is None, reason="needs a Python >= 3.12 (executorch-numpy-runtime requires it)")
def test_the_runner_serves_programs_without_torch(digits_run, tmp_path):
    """The shipped runner folder (worker, runtime_base, rt_executorch) in a Python with numpy and
    executorch-numpy-runtime only: it loads edgekit's int8 program and answers as ExecuTorch does here."""
    import shutil

    from edgekit.backends.executorch.rt_executorch import MODEL

    venv = tmp_path / "venv"
    subprocess.run([_python312(), "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "numpy",
                          "executorch-numpy-runtime==1.4.0"], capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"executorch-numpy-runtime does not install here: {pip.stderr.strip()[-300:]}")
    runner = tmp_path / "runner"
    runner.mkdir()
    src = ROOT / "src" / "edgekit"
    for f in (src / "runner" / "worker.py", src / "runner" / "runtime_base.py",
              src / "backends" / "executorch" / "rt_executorch.py"):
        shutil.copy(f, runner / f.name)
    _, rows = digits_run
    pte = rows[("executorch-int8", "local")]["artifact"]
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    requests = [{"op": "load", "artifact": pte, "runtime": "executorch", "module": "rt_executorch", "threads": 1},
                {"op": "infer", "inputs": str(tmp_path / "in.npz"), "outputs": str(tmp_path / "out.npz")},
                {"op": "quit"}]
    proc = subprocess.run([str(venv / "bin" / "python"), "worker.py", "serve"], cwd=runner, text=True,
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, timeout=300)
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answers[0]["ready"] and all(a.get("ok") for a in answers[1:]), proc.stdout + proc.stderr[-2000:]
    assert "no torch" in answers[1]["runtime_version"] and answers[1]["inputs"][0]["name"] == "x"
    here = MODEL(pte, 1)
    want = np.concatenate([here.run(here.prepare({"x": x[i:i + 1]}))["output"] for i in range(len(x))])
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_allclose(got["output"], want, rtol=1e-5, atol=1e-5)
