"""The regression gate on records: unit cases, and a planted regression in real runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.core.gate import Budgets, compare

ROOT = Path(__file__).resolve().parents[1]


def rec(p50=1.0, ci=(0.98, 1.02), size=1000, acc=0.98, cos=0.999, status="ok", run="1", emulated=False):
    return {"model": "m", "target": "t", "device": {"name": "local", "emulated": emulated}, "run_id": run,
            "status": status, "size_bytes": size,
            "bench": {"p50_ms": p50, "median_ci95_ms": list(ci)},
            "parity": {"task_metric": "accuracy", "task_value": acc, "outputs": [{"cosine_mean": cos}]}}


def test_unchanged_passes_and_noise_is_not_a_regression():
    assert compare([rec()], [rec()]).passed
    # 8% slower but the CIs overlap: noise, not a regression
    assert compare([rec()], [rec(p50=1.08, ci=(1.0, 1.15))]).passed


def test_each_regression_is_named():
    res = compare([rec()], [rec(p50=1.5, ci=(1.45, 1.55), size=1200, acc=0.95, cos=0.99)])
    whats = {f.what for f in res.regressions}
    assert whats == {"p50 latency ms", "size bytes", "accuracy", "cosine"}
    assert not res.passed
    lat = next(f for f in res.regressions if f.what == "p50 latency ms")
    assert "+50.0%" in lat.change


def test_status_drop_budgets_emulated_and_latest_record_wins():
    assert compare([rec()], [rec(status="parity_failed")]).regressions[0].what == "status"
    assert compare([rec()], [rec(acc=0.976)], Budgets(task_drop_points=0.5)).passed
    assert compare([rec(emulated=True)], [rec(p50=9, ci=(8.9, 9.1), emulated=True)]).passed
    assert compare([rec()], [rec(p50=9, ci=(8.9, 9.1), run="1"), rec(run="2")]).passed


def _run(model: Path, out: Path):
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", f"{model}:build", "--targets", "onnx", "--data",
                        "digits", "--out", str(out), "--min-runs", "300", "--min-seconds", "0.5"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "digits_cnn" / "results.jsonl"


@pytest.mark.onnx
def test_check_catches_a_planted_regression_and_passes_a_rerun(tmp_path):
    base = _run(ROOT / "examples" / "digits_cnn.py", tmp_path / "base")
    again = _run(ROOT / "examples" / "digits_cnn.py", tmp_path / "again")
    # the planted regression: same model name, 8x wider convolutions (slower, bigger), trained one epoch
    worse = tmp_path / "worse" / "digits_cnn.py"
    worse.parent.mkdir()
    text = (ROOT / "examples" / "digits_cnn.py").read_text()
    text = text.replace("EPOCHS = 30", "EPOCHS = 1").replace("nn.Conv2d(1, 16, 3", "nn.Conv2d(1, 128, 3") \
        .replace("nn.Conv2d(16, 32, 3", "nn.Conv2d(128, 256, 3").replace("nn.Conv2d(32, 32, 3", "nn.Conv2d(256, 32, 3")
    worse.write_text(text)
    current = _run(worse, tmp_path / "current")

    def check(cur):
        return subprocess.run([sys.executable, "-m", "edgekit", "check", "--baseline", str(base), str(cur)],
                              capture_output=True, text=True, timeout=120)

    ok = check(again)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS: 1 (model, target, device) compared" in ok.stdout
    bad = check(current)
    assert bad.returncode == 1
    assert "REGRESSED" in bad.stdout and "digits_cnn/onnx@local: p50 latency ms" in bad.stdout
    assert "size bytes" in bad.stdout and "accuracy" in bad.stdout
    rows = [json.loads(x) for x in current.read_text().splitlines()]
    assert rows[-1]["bench"]["p50_ms"] > 1.5 * json.loads(base.read_text().splitlines()[-1])["bench"]["p50_ms"]
