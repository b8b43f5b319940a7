"""`edgekit fit`: the right choice under budgets, and an honest 'impossible'."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.core.fit import Budget, explain, judge

ROOT = Path(__file__).resolve().parents[1]


def rec(target, p50, size_mb, drop=None, cos=0.999, status="ok"):
    return {"target": target, "status": status, "size_bytes": int(size_mb * 2**20), "bench": {"p50_ms": p50},
            "parity": {"task_delta_points": None if drop is None else -drop,
                       "outputs": [{"cosine_mean": cos}]}, "artifact": f"/a/{target}"}


RECS = [rec("a", 1.0, 10, 0.0), rec("b", 0.5, 3, 2.0), rec("c", 0.7, 3, 0.5), rec("d", 0.2, 1, 0, status="run_failed")]


def test_fastest_that_meets_every_budget_wins():
    win, cands, _ = judge(RECS, Budget(max_latency_ms=0.8, max_size_mb=4, max_accuracy_drop=1))
    assert win.name == "c"
    why = {c.name: c.broken for c in cands}
    assert why["a"] and "latency" in why["a"][0] and any("size" in w for w in why["a"])
    assert "accuracy drop 2.00 points > 1 points" in why["b"][0]
    assert "run failed" in why["d"][0]
    text = explain(win, cands, {}, Budget(max_latency_ms=0.8), "dev")
    assert text.startswith("BEST on dev: c")


def test_impossible_budget_says_which_and_how_close():
    win, cands, closest = judge(RECS, Budget(max_latency_ms=0.1, max_accuracy_drop=1))
    assert win is None
    text = explain(win, cands, closest, Budget(max_latency_ms=0.1, max_accuracy_drop=1), "dev")
    assert "the latency budget (0.1 ms) cannot be met: the best of all candidates is p50 0.500 ms (5.00x" in text
    win, cands, closest = judge(RECS, Budget(max_latency_ms=0.6, max_size_mb=2.9))
    text = explain(win, cands, closest, Budget(max_latency_ms=0.6, max_size_mb=2.9), "dev")
    assert "size budget (2.9 MB) cannot be met" in text


def test_embeddings_use_a_cosine_floor():
    recs = [rec("x", 1.0, 5, None, cos=0.97), rec("y", 2.0, 5, None, cos=0.99)]
    win, _, _ = judge(recs, Budget(max_accuracy_drop=1))
    assert win.name == "y"


def _fit(model, *args, out):
    return subprocess.run([sys.executable, "-m", "edgekit", "fit", model, "--out", str(out), "--min-runs", "30",
                           "--min-seconds", "0.2", *args], capture_output=True, text=True, timeout=900)


def _check_choice(stdout, results: Path, budget):
    """The choice equals the fastest record meeting every budget, recomputed from the records."""
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    run = rows[-1]["run_id"]
    rows = [r for r in rows if r["run_id"] == run and r["target"] != "source" and r["status"] == "ok"]
    ok = [r for r in rows if budget(r)]
    best = min(ok, key=lambda r: (r["bench"]["p50_ms"], r["size_bytes"]))
    assert f"BEST on local: {best['target']} " in stdout


@pytest.mark.tflite
def test_fit_digits_feasible_and_impossible(tmp_path):
    model = str(ROOT / "examples" / "digits_cnn.py") + ":build"
    tg = ["--targets", "onnx,onnx-int8,tflite,tflite-int8"]
    r = _fit(model, "--data", "digits", *tg, "--max-size-mb", "0.05", "--max-accuracy-drop", "1", out=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    _check_choice(r.stdout, tmp_path / "digits_cnn" / "results.jsonl",
                  lambda x: x["size_bytes"] <= 0.05 * 2**20 and -x["parity"]["task_delta_points"] <= 1)
    assert "size 0.09 MB > 0.05 MB" in r.stdout  # the fp32 TFLite lost on size
    r = _fit(model, "--data", "digits", *tg, "--max-latency-ms", "0.0005", out=tmp_path)
    assert r.returncode == 1
    assert "NO target meets every budget" in r.stdout and "the latency budget (0.0005 ms) cannot be met" in r.stdout


@pytest.mark.onnx
def test_fit_minilm_feasible_and_impossible(tmp_path):
    model = str(ROOT / "examples" / "minilm.py") + ":build"
    tg = ["--targets", "onnx,onnx-fp16,onnx-int8-dynamic"]
    r = _fit(model, "--data", "sentences", *tg, "--max-size-mb", "40", "--max-accuracy-drop", "1", out=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "BEST on local: onnx-int8-dynamic" in r.stdout  # the only one under 40 MB with cosine >= 0.98
    _check_choice(r.stdout, tmp_path / "minilm" / "results.jsonl",
                  lambda x: x["size_bytes"] <= 40 * 2**20 and x["parity"]["outputs"][0]["cosine_mean"] >= 0.98)
    r = _fit(model, "--data", "sentences", *tg, "--max-size-mb", "5", out=tmp_path)
    assert r.returncode == 1 and "the size budget (5 MB) cannot be met" in r.stdout
