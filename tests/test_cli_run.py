"""The commands a user types, through the real CLI in a child process."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"


def edgekit(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_help_is_fast_and_imports_no_framework():
    t0 = time.perf_counter()
    r = edgekit("--help")
    assert r.returncode == 0 and "convert" in r.stdout
    assert time.perf_counter() - t0 < 5
    probe = subprocess.run([sys.executable, "-c", "import sys, edgekit.cli.app, edgekit.core.graph; "
                            "edgekit.core.graph.load_converters(); edgekit.cli.app.build_parser(); "
                            "print([m for m in ('torch','tensorflow','onnx','onnxruntime','ai_edge_litert') "
                            "if m in sys.modules])"], capture_output=True, text=True)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


def test_targets_and_graph_commands():
    r = edgekit("targets")
    assert r.returncode == 0
    for name in ("onnx-int8", "tflite-int8", "tflite-int8-dynamic", "onnx-fp16"):
        assert name in r.stdout
    r = edgekit("graph", "--from", "torch", "--to", "tflite-int8")
    assert r.returncode == 0
    assert "PLAN" in r.stdout and "OnnxFromTorch, SavedModelFromOnnx, TfliteFromSavedModel" in r.stdout
    assert "rejected" in r.stdout


@pytest.mark.tflite
def test_run_convert_parity_bench(tmp_path):
    out = tmp_path / "out"
    r = edgekit("run", MODEL, "--targets", "onnx-int8,tflite-int8", "--data", "digits", "--out", str(out),
                "--min-runs", "20", "--min-seconds", "0.1")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["target", "device", "status"]
    rows = {ln.split()[0]: ln for ln in lines[2:5] if ln.strip()}
    assert "converted" in rows["onnx-int8"] and "converted" in rows["tflite-int8"]
    assert "source" in rows
    records = [json.loads(x) for x in (out / "digits_cnn" / "results.jsonl").read_text().splitlines()]
    assert [r_["target"] for r_ in records] == ["source", "onnx-int8", "tflite-int8"]
    for rec in records[1:]:
        assert rec["status"] == "ok" and rec["parity"]["passed"]
        assert rec["bench"]["p50_ms"] > 0 and rec["size_bytes"] > 0 and rec["speedup_vs_source"] > 0
        assert rec["data"]["evaluation_samples"] == 450
    md = (out / "digits_cnn" / "report.md").read_text()
    assert "| tflite-int8 |" in md and "95% CI" in md
    # the console table has its legend, the columns name their metric, the report paths their kind
    assert header[4:7] == ["accuracy", "(Δ", "pts)"] and "worst cosine" in lines[0] and "max err" in lines[0]
    legend = r.stdout[r.stdout.index("Legend."):]
    assert "on the same 450 held-out samples of 'digits'" in legend and "(noisy), ⚠" in legend
    assert "markdown: " in r.stdout and "records:  " in r.stdout
    # one data sentence in report.md, and calibration said the same way there and in the manifest
    cap = "onnx-int8, tflite-int8: 200 of 300 calibration samples (the recipe's cap)"
    assert md.count("Data 'digits'") == 1 and cap in md and cap in " ".join(legend.split())
    assert "checked disjoint" in md and "**Legend.**" in md

    art = out / "digits_cnn" / "tflite-int8" / "model.tflite"
    man = json.loads((art.parent / "manifest.json").read_text())
    assert man["route"][-1]["edge"] == "TfliteFromSavedModel" and man["data"]["calibration_samples"] == 300
    assert man["data"]["calibration_used"] == 200 and man["data"]["calibration_cap"] == 200
    assert man["data"]["calibration"] == "200 of 300 calibration samples (the recipe's cap)"
    assert any("200 of 300 calibration samples (the recipe's cap)" in n for s in man["route"] for n in s["notes"])

    t0 = time.perf_counter()
    r = edgekit("convert", MODEL, "--target", "tflite-int8", "--data", "digits", "--out", str(out))
    assert r.returncode == 0 and "cached" in r.stdout
    assert time.perf_counter() - t0 < 30  # no onnx2tf rerun (the model source still loads torch)

    r = edgekit("parity", str(art), "--reference", MODEL, "--data", "digits")
    assert r.returncode == 0, r.stderr
    assert "parity: PASSED" in r.stdout and "accuracy" in r.stdout

    r = edgekit("bench", str(art), "--json", "--min-runs", "20", "--min-seconds", "0.1")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["n"] >= 20 and b["p50_ms"] > 0 and b["peak_rss_mb"] > 0 and b["synthetic_inputs"]


@pytest.mark.onnx
def test_parity_failure_is_reported(tmp_path):
    """A target whose tolerance cannot be met shows as 'parity failed' with the reason, exit code 1."""
    specs = tmp_path / "specs" / "targets"
    specs.mkdir(parents=True)
    (specs / "onnx-int8-strict.toml").write_text(
        'name = "onnx-int8-strict"\nformat = "onnx"\nrecipe = "int8-static"\nruntime = "onnxruntime"\n'
        'extension = ".onnx"\n[tolerance]\nmin_cosine = 0.999999\nmax_abs = 1e-6\n')
    import os

    env = dict(os.environ, EDGEKIT_SPECS=str(tmp_path / "specs"))
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", MODEL, "--targets", "onnx-int8-strict", "--data",
                        "digits", "--out", str(tmp_path / "out"), "--min-runs", "5", "--min-seconds", "0"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1
    assert "PARITY FAILED" in r.stdout and "max abs error" in r.stdout


@pytest.mark.onnx
def test_calib_data_and_data_from_one_file_stay_disjoint(tmp_path):
    """Issue 10: `--data d.npz --calib-data d.npz` reported "50 calibration, 12 evaluation samples
    (disjoint)": every held-out sample was calibrating too. Now they are left out, and said so."""
    import numpy as np

    from edgekit.core.data import digits_split

    (_, _), (xe, ye) = digits_split()
    np.savez(tmp_path / "d50.npz", x=xe[:50], labels=ye[:50])
    out = tmp_path / "out"
    r = edgekit("run", MODEL, "--targets", "onnx-int8", "--data", str(tmp_path / "d50.npz"), "--calib-data",
                str(tmp_path / "d50.npz"), "--out", str(out), "--min-runs", "5", "--min-seconds", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    rec = [json.loads(x) for x in (out / "digits_cnn" / "results.jsonl").read_text().splitlines()][-1]
    d = rec["data"]
    assert (d["calibration_samples"], d["evaluation_samples"], d["shared_samples"]) == (38, 12, 0)
    assert "the 50 samples of --calib-data" in d["split"] and "less 12 that are also evaluation samples" in d["split"]
    assert "seeded random split (seed 0) of the 50 samples" in d["split"]
    md = (out / "digits_cnn" / "report.md").read_text()
    assert "Data 'd50': 12 held-out evaluation samples, 38 calibration samples available" in md
    assert "checked disjoint" in md
