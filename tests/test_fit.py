"""`edgekit fit`: the right choice under budgets, and an honest 'impossible'."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.core.fit import Budget, explain, judge, pick_fallback

ROOT = Path(__file__).resolve().parents[1]


def rec(target, p50, size_mb, drop=None, cos=0.999, status="ok", runtime="rt1"):
    return {"target": target, "status": status, "size_bytes": int(size_mb * 2**20), "bench": {"p50_ms": p50},
            "parity": {"task_delta_points": None if drop is None else -drop,
                       "outputs": [{"cosine_mean": cos}]}, "artifact": f"/a/{target}", "runtime": runtime}


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


def test_fallback_is_the_fastest_artifact_on_another_runtime_within_every_budget():
    recs = [rec("a", 1.0, 1, 0), rec("b", 0.5, 1, 0), rec("c", 0.8, 1, 0, runtime="rt2"),
            rec("d", 0.6, 1, 5.0, runtime="rt2"), rec("e", 0.9, 1, 0, runtime="rt2")]
    budget = Budget(max_accuracy_drop=1)
    win, cands, closest = judge(recs, budget)
    fb = pick_fallback(win, cands)
    assert (win.name, fb.name) == ("b", "c")  # d is faster but loses 5 points
    text = explain(win, cands, closest, budget, "dev", fb, True)
    assert "FALLBACK on dev: c  (p50 0.800 ms, runtime rt2 instead of rt1)" in text
    rows = {ln.split()[0]: ln for ln in text.splitlines()[5:]}
    assert rows["c"].endswith("FALLBACK") and rows["b"].endswith("BEST") and "accuracy drop" in rows["d"]
    win, cands, closest = judge(recs[:2], budget)
    assert pick_fallback(win, cands) is None
    text = explain(win, cands, closest, budget, "dev", None, True)
    assert "NO fallback: no artifact on a runtime other than rt1 meets every budget" in text
    assert "fallback" not in explain(win, cands, closest, budget, "dev").lower()


def test_the_deployment_bundle_names_primary_and_fallback_relative_to_itself(tmp_path):
    from edgekit.core.deploy import load_bundle, write_bundle
    from edgekit.core.errors import DataError, SourceNotFound
    from edgekit.core.sources import file_digest
    from edgekit.reports import Record

    records = []
    for target, runtime in (("t-int8", "rt1"), ("u-int8", "rt2")):
        art = tmp_path / "out" / "m" / target / "model.bin"
        art.parent.mkdir(parents=True)
        art.write_bytes(target.encode() * 100)
        r = rec(target, 0.5, 0.001, 0.2, runtime=runtime)
        r.update(model="m", artifact=str(art), artifact_sha256=file_digest(art), run_id="r1",
                 bench={"p50_ms": 0.5, "median_ci95_ms": [0.49, 0.51]}, device={"name": "dev", "kind": "ssh"})
        records.append(Record.from_json(r))
    path = write_bundle(tmp_path / "out" / "m" / "deployment.json", records[0], records[1],
                        {"max_latency_ms": 5.0, "max_size_mb": None}, "dev", True)
    d = json.loads(path.read_text())
    assert d["primary"]["artifact"] == "t-int8/model.bin" and d["fallback"]["runtime"] == "rt2"
    assert d["budgets"] == {"max_latency_ms": 5.0} and d["primary"]["measured"]["median_ci95_ms"] == [0.49, 0.51]
    (tmp_path / "out").rename(tmp_path / "moved")  # a committed or copied folder still resolves
    b = load_bundle(tmp_path / "moved" / "m" / "deployment.json")
    assert [e.role for e in b.entries] == ["primary", "fallback"] and b.device == "dev"
    assert b.primary.verify() == tmp_path / "moved" / "m" / "t-int8" / "model.bin"
    b.fallback.artifact.write_bytes(b"changed")
    with pytest.raises(DataError, match="is not the one the fit chose"):
        b.fallback.verify()
    b.primary.artifact.unlink()
    with pytest.raises(SourceNotFound, match="the primary artifact of the deployment bundle"):
        b.primary.verify()
    with pytest.raises(SourceNotFound, match="edgekit fit MODEL"):
        load_bundle(tmp_path / "nope.json")
    only = write_bundle(tmp_path / "b.json", records[0], None, {}, "dev", True)
    assert json.loads(only.read_text())["fallback_missing"].startswith("no artifact on a runtime other than rt1")
    with pytest.raises(DataError, match="has no fallback artifact"):
        load_bundle(only).entry("fallback")


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


@pytest.mark.onnx
def test_run_best_names_the_fastest_artifact_meeting_the_budget(tmp_path):
    """`edgekit run --best`: the run's table, then fit's choice (default budget: cosine >= 0.99)."""
    model = str(ROOT / "examples" / "digits_cnn.py") + ":build"
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", model, "--best", "--targets",
                        "onnx,onnx-int8,onnx-int8-accuracy-aware", "--data", "digits", "--out", str(tmp_path),
                        "--min-runs", "30", "--min-seconds", "0.2"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "--best with no budget given: cosine >= 0.99" in r.stdout
    _check_choice(r.stdout, tmp_path / "digits_cnn" / "results.jsonl",
                  lambda x: min(o["cosine_mean"] for o in x["parity"]["outputs"]) >= 0.99)
