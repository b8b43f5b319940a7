"""Your model's tests, run on the device it ships on: copy this file beside your model and change
MODEL, DATA, the targets and the budgets. The pytest plugin comes with edgekit.

    pytest examples/test_digits_on_device.py                            # this host ("local")
    pytest examples/test_digits_on_device.py --edge-device test-host    # a device from devices.toml
    pytest examples/test_digits_on_device.py --edge-device test-host --edge-device arm64-emu \
        --junitxml reports/junit.xml                                    # records: reports/results.jsonl
    edgekit report reports/results.jsonl                                # report.html, report.md, results.csv

A device that cannot be reached skips its tests with the reason (--edge-strict fails them).

Golden files let a CI job without the training framework check the artifacts:

    edgekit golden record examples/digits_cnn.py:build --data digits --out examples/golden/digits

and ``edgekit fit ... --fallback`` writes the deployment bundle (primary and fallback artifacts):

    edgekit fit examples/digits_cnn.py:build --data digits --targets onnx-int8,tflite-int8 \
        --max-latency-ms 5 --max-accuracy-drop 1 --fallback --out out
"""
from pathlib import Path

import numpy as np
import pytest

from edgekit.testing import assert_golden, assert_latency, assert_parity

HERE = Path(__file__).resolve().parent
MODEL = f"{HERE / 'digits_cnn.py'}:build"
DATA = "digits"
GOLDEN = HERE / "golden" / "digits"
BUNDLE = Path("out") / "digits_cnn" / "deployment.json"


@pytest.mark.edge(targets=["onnx-int8", "tflite-int8"], model=MODEL, data=DATA)
def test_accuracy_holds_on_the_device(edge_artifact):
    # the artifact's outputs on the device against the source model's, on the held-out samples of DATA;
    # the target's tolerance applies (int8: cosine, and at most 1 point of accuracy lost)
    assert_parity(edge_artifact(), reference=MODEL, data=DATA)


@pytest.mark.edge(targets=["tflite-int8"], model=MODEL, data=DATA)
def test_latency_budget(edge_session):
    stats = edge_session.bench()  # one held-out sample, warm-up, then at least 50 runs and 1 s
    assert_latency(stats, p90_ms=5.0)  # skipped on an emulated device: its timings are not the board's


@pytest.mark.edge(targets=["tflite-int8"], model=MODEL, data=DATA)
def test_reads_digits(edge_artifact, edge_session):
    data = edge_artifact().data
    outputs = edge_session.run(data.eval["x"][:64])  # the artifact's outputs, computed on the device
    predicted = np.argmax(next(iter(outputs.values())), axis=-1)
    assert (predicted == data.labels[:64]).mean() >= 0.9


@pytest.mark.skipif(not GOLDEN.exists(), reason=f"no golden files: edgekit golden record {MODEL} --data {DATA} "
                                                f"--out {GOLDEN}")
@pytest.mark.edge(targets=["tflite-int8"], model=MODEL, data=DATA)
def test_matches_the_golden_files(edge_artifact):
    assert_golden(edge_artifact(), GOLDEN)


@pytest.mark.skipif(not BUNDLE.exists(), reason="no deployment bundle: edgekit fit ... --fallback --out out")
@pytest.mark.edge(bundle=BUNDLE)
def test_primary_and_fallback(edge_artifact, edge_session):
    # runs once for the bundle's primary artifact and once for its fallback (another runtime)
    artifact = edge_artifact()
    if GOLDEN.exists():  # golden files need no training framework: this test runs in a CI job without it
        assert_golden(artifact, GOLDEN)
    assert_latency(edge_session(artifact).bench(), p50_ms=artifact.budgets.get("max_latency_ms", 5.0))
