"""The coreml backend with real components: coremltools 9 beside torch 2.13 converts torch.export programs
to mlprogram packages (fp16, fp32, int8 weights, k-means palettes, W8A8 calibrated on the data). Core ML
predicts only on macOS: here every package is validated against the source (names, shapes, dtypes, the
weight precision the recipe promises), the record's parity says it needs a macOS device and never passes,
and the runner, locally and on the real SSH test host, ends in one sentence."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.lazy import available

from .sshd_host import sshd_fixture
from .cli import edgekit, records

pytestmark = [pytest.mark.coreml,
              pytest.mark.skipif(not available("coremltools"), reason="needs coremltools (edgekit setup coreml)")]
ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits_cnn.py") + ":build"
MINILM = str(ROOT / "examples" / "minilm.py") + ":build"
TARGETS = ["coreml", "coreml-fp32", "coreml-int8", "coreml-palettized", "coreml-w8a8"]
FAST = ["--min-runs", "20", "--min-seconds", "0.2", "--warmup", "2"]
ONE_SENTENCE = "Core ML runs only on macOS (this device is Linux x86_64)"
sshd = sshd_fixture("module")


def test_targets_routes_and_setup():
    from edgekit.core.graph import plan
    from edgekit.core.specs import get_target

    kinds = {t: get_target(t).recipe_spec.kind for t in TARGETS}
    assert kinds == {"coreml": "fp16", "coreml-fp32": "none", "coreml-int8": "int8-dynamic",
                     "coreml-palettized": "palettize", "coreml-w8a8": "int8-static"}
    assert get_target("coreml-palettized").options == {"bits": 6}
    for t in TARGETS:
        assert plan("torch", get_target(t)).usable[0].names == ["MlpackageFromTorch"]
    assert plan("onnx", get_target("coreml")).usable[0].names == ["TorchFromOnnx", "MlpackageFromTorch"]
    r = edgekit("setup", "coreml", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = edgekit("targets")
    rows = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "build here" in rows["target"] and "measure here" in rows["target"]
    for t in TARGETS:  # built here, measured on a Mac
        assert " yes " in rows[t] and "needs a macOS device" in rows[t], rows[t]
    assert "needs" not in rows["onnx"].split("ONNX")[0]


# ---- the digits CNN: every target converts and validates; parity needs a Mac -----------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml-run")
    r = edgekit("run", DIGITS, "--targets", ",".join(TARGETS), "--data", "digits", "--out", str(out), *FAST)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, records(out, "digits_cnn"), r.stdout


def test_digits_every_target_converts_and_validates(digits_run):
    out, rows, _ = digits_run
    want = {"coreml": ("float16", []), "coreml-fp32": ("float32", []), "coreml-int8": ("int8", []),
            "coreml-palettized": ("palettized", [6]), "coreml-w8a8": ("int8", [])}
    sizes = {}
    for target, (main, bits) in want.items():
        row = rows[(target, "local")]
        assert row["status"] == "needs_device" and row["reason"] == ONE_SENTENCE, row
        assert row["parity"] == {"passed": False, "needs": "a macOS device", "failures": ["needs a macOS device"]}
        assert "bench" not in row and row["route"] == ["MlpackageFromTorch"]
        v = row["validation"]
        assert v["passed"] and not v["failures"] and v["program"] == "mlProgram" and v["opset"] == "CoreML7"
        assert v["inputs"] == [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}]
        assert v["outputs"] == [{"name": "output", "shape": [1, 10], "dtype": "float32"}]
        assert max(v["weights"], key=v["weights"].get) == main and v["palette_bits"] == bits
        assert v["ops"]["conv"] == 3 and v["ops"]["relu"] == 4
        folder = Path(row["artifact"])
        assert folder.name == "model.mlpackage" and (folder / "Data" / "com.apple.CoreML" / "model.mlmodel").is_file()
        assert sorted(p.name for p in folder.iterdir()) == ["Data", "Manifest.json"]  # the package and only it
        manifest = json.loads((folder.parent / "manifest.json").read_text())
        assert manifest["proof"]["proven"] is False and manifest["proof"]["validated"] is True
        sizes[target] = row["size_bytes"]
    assert rows[("coreml-w8a8", "local")]["validation"]["activation_quantize_ops"] >= 5
    assert sizes["coreml-palettized"] < sizes["coreml-int8"] < sizes["coreml"] < sizes["coreml-fp32"]
    assert not list(out.glob("digits_cnn/.*part*"))  # nothing half-written beside the packages
    print("\ndigits sizes: " + ", ".join(f"{t} {s}" for t, s in sizes.items()))


def test_the_table_says_validated_and_needs_a_mac(digits_run):
    out, _, stdout = digits_run
    lines = [ln for ln in stdout.splitlines() if ln.startswith("coreml-int8 ")]
    assert lines and "validated, not run: parity needs a macOS device" in lines[0], stdout
    assert f"coreml-int8: {ONE_SENTENCE}" in stdout
    md = (out / "digits_cnn" / "report.md").read_text()
    assert "validated, not run: parity needs a macOS device" in md and "PARITY FAILED" not in md


def test_validation_catches_a_package_that_does_not_match_the_source(digits_run, tmp_path):
    """Packages converted from other models (another output shape, other names) and a package whose
    weights are not what its target promises are refused, by the validation and by the proof."""
    import torch

    from edgekit.backends.coreml.validate import validate
    from edgekit.core.data import load_data
    from edgekit.core.errors import ConversionError
    from edgekit.core.proof import prove
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    source = load_source(DIGITS)
    out, rows, _ = digits_run
    good = Path(rows[("coreml", "local")]["artifact"])
    target = get_target("coreml")
    assert validate(good, target, source.inputs, {"output": [1, 10]})["passed"]

    class Other(torch.nn.Module):  # another model: 5 classes
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.fc(x.flatten(1))

    def package(module, in_name, out_name, path):
        import coremltools as ct

        ep = torch.export.export(module.eval(), (torch.zeros(1, 1, 8, 8),)).run_decompositions()
        ct.convert(ep, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                   inputs=[ct.TensorType(name=in_name, shape=(1, 1, 8, 8), dtype=np.float32)],
                   outputs=[ct.TensorType(name=out_name, dtype=np.float32)]).save(str(path))
        return path

    other = package(Other(), "x", "output", tmp_path / "other.mlpackage")
    res = validate(other, target, source.inputs, {"output": [1, 10]})
    assert not res["passed"] and res["failures"] == ["output 'output' has shape [1, 5], the source's is [1, 10]"]
    renamed = package(source.obj, "image", "logits", tmp_path / "renamed.mlpackage")
    res = validate(renamed, target, source.inputs, {"output": [1, 10]})
    assert res["failures"] == ["inputs are ['image'], the source's are ['x']",
                               "outputs are ['logits'], the source's are ['output']"]
    # the fp16 package is not what the palettized or fp32 targets promise
    res = validate(good, get_target("coreml-palettized"), source.inputs, {"output": [1, 10]})
    assert res["failures"] == ["palettized weights expected, but only 0 of 22954 weight elements are"]
    assert "stored in fp16" in validate(good, get_target("coreml-fp32"), source.inputs,
                                        {"output": [1, 10]})["failures"][0]
    # the proof (what conversion runs) refuses the other model's package: the edge fails
    data = load_data("digits", source.inputs)
    with pytest.raises(ConversionError, match="does not match the source: output 'output' has shape"):
        prove(source, target, other, data, "MlpackageFromTorch")
    assert prove(source, target, good, data, "MlpackageFromTorch")["validated"]


def test_palette_bits_and_compute_units_are_target_options(tmp_path):
    from dataclasses import replace

    from edgekit.backends.coreml.rt_coreml import signature
    from edgekit.backends.coreml.stack import import_coremltools
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.errors import NoRoute
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target, with_options

    source = load_source(DIGITS)
    data = load_data("digits", source.inputs)
    [target] = with_options([get_target("coreml-palettized")], ["bits=4", "compute_units=cpu_and_ne"])
    res = convert(source, target, data, tmp_path)
    assert res.manifest["proof"]["validation"]["palette_bits"] == [4] and res.manifest["proof"]["validated"]
    sig = signature(import_coremltools().utils.load_spec(str(res.artifact)))
    assert sig["compute_units"] == "cpu_and_ne" and sig["source"]["outputs"] == ["output"]
    assert sig["inputs"] == [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    bad = replace(get_target("coreml"), options={"compute_units": "gpu"})
    with pytest.raises(NoRoute, match="compute_units = 'gpu' is not one of all, cpu_only"):
        convert(source, bad, data, tmp_path)


@pytest.mark.skipif(not available("onnx2torch"), reason="onnx2torch is not installed (edgekit setup torch)")
def test_onnx_source_reaches_coreml(tmp_path):
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    source = load_source(DIGITS)
    onnx_file = convert(source, get_target("onnx"), None, tmp_path / "a").artifact
    onnx_source = load_source(str(onnx_file))
    res = convert(onnx_source, get_target("coreml-int8"), load_data("digits", onnx_source.inputs), tmp_path / "b")
    assert [s["edge"] for s in res.manifest["route"]] == ["TorchFromOnnx", "MlpackageFromTorch"]
    proof = res.manifest["proof"]
    assert proof["validated"] and proof["validation"]["outputs"][0]["shape"] == [1, 10]
    assert proof["validation"]["weights"]["int8"] > 0.9 * sum(proof["validation"]["weights"].values())


# ---- the runner: one sentence off macOS, here and on the SSH test host; the macOS probe --------------------

def test_the_runner_here_ends_in_one_sentence(digits_run):
    _, rows, _ = digits_run
    r = edgekit("bench", rows[("coreml", "local")]["artifact"], *FAST)
    assert r.returncode == 5 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"edgekit: error: {ONE_SENTENCE}."]


@pytest.mark.ssh
def test_the_runner_on_the_ssh_test_host_ends_in_one_sentence(sshd, digits_run, tmp_path):
    inv = tmp_path / "devices.toml"
    inv.write_text(sshd.devices_toml("test-host"))
    env = {"EDGEKIT_DEVICES": str(inv)}
    _, rows, _ = digits_run
    r = edgekit("bench", rows[("coreml-int8", "local")]["artifact"], "--device", "test-host", *FAST, env=env)
    assert r.returncode == 5 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"edgekit: error: {ONE_SENTENCE}."]
    r = edgekit("run", DIGITS, "--targets", "coreml-int8", "--data", "digits", "--device", "test-host", *FAST,
                "-o", str(tmp_path / "out"), env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    rec = records(tmp_path / "out", "digits_cnn")[("coreml-int8", "test-host")]
    assert rec["status"] == "needs_device" and rec["reason"] == ONE_SENTENCE and not rec["parity"]["passed"]
    assert rec["device"]["kind"] == "ssh" and rec["validation"]["passed"]
    assert not sshd.leftovers()


def test_the_probe_on_macos_reads_no_proc_and_peak_memory_is_bytes_there():
    from edgekit.runner import worker

    assert worker.maxrss_kb(50 * 1024 * 1024, "Darwin") == 50 * 1024  # bytes on macOS
    assert worker.maxrss_kb(51200, "Linux") == 51200  # KB on Linux
    opened = []

    def audit(event, args):
        if event == "open" and str(args[0]).startswith("/proc"):
            opened.append(args[0])

    sys.addaudithook(audit)
    env = worker.environment({"coreml": "x"}, system="Darwin")
    assert not opened, opened
    assert env["os"] == "Darwin" and "os_version" in env and env["runtimes"] == {"coreml": "x"}
    worker.environment({}, system="Linux")
    assert any(p == "/proc/cpuinfo" for p in opened)  # the hook sees what the Linux probe reads


# ---- MiniLM (slow) -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_minilm_every_target_converts_and_validates(tmp_path):
    r = edgekit("run", MINILM, "--targets", ",".join(TARGETS), "--data", "sentences", "--out", str(tmp_path / "out"),
                *FAST, timeout=5400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = records(tmp_path / "out", "minilm")
    for target in TARGETS:
        row = rows[(target, "local")]
        assert row["status"] == "needs_device" and row["validation"]["passed"], (target, row.get("reason"))
        v = row["validation"]
        assert [i["dtype"] for i in v["inputs"]] == ["int32", "int32"] and v["outputs"][0]["shape"] == [1, 384]
        print(f"\nminilm {target}: {row['size_bytes']} bytes, convert {row['convert_s']:.1f} s, "
              f"{sum(v['ops'].values())} ops, weights {v['weights']}, bits {v['palette_bits']}")
