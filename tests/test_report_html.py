"""The HTML report and the CSV: the Pareto front against a brute-force reference, the page's content
(every target, the emulated and random-input warnings, nothing fetched from the network), the CSV's
columns, the atomic write, and a real headless Chromium rendering the page from a file:// URL."""
from __future__ import annotations

import copy
import csv
import io
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.reports import CSV_COLUMNS, csv_report, html_report, pareto_front, write_html

# --------------------------------------------------------------------------------------------
# Records shaped like `edgekit run`'s (see /tmp/out*/…/results.jsonl): a classifier measured on a
# local machine, an SSH board and an emulated ARM64 device, and an embedding model on random data.

PROBE = {"ok": True, "os": "Linux", "release": "6.1.0", "arch": "x86_64", "cpu": "AMD EPYC", "cpu_count": 2,
         "mem_total_kb": 24683656, "python": "3.11.7", "numpy": "2.4.6",
         "runtimes": {"onnxruntime": "1.32.0", "litert": "2.3.0"}}


def _bench(p50, spread=1.0, n=500):
    return {"n": n, "p50_ms": p50, "p90_ms": p50 * 1.1 * spread, "p99_ms": p50 * 1.6 * spread,
            "mean_ms": p50 * 1.05, "std_ms": p50 * 0.1, "min_ms": p50 * 0.95, "max_ms": p50 * 8,
            "median_ci95_ms": [p50 * 0.99, p50 * 1.01], "noisy": False, "first_ms": p50 * 2, "warmup": 10,
            "threads": 1, "batch": 1, "peak_rss_mb": 120.5, "runner_base_rss_mb": 30.0, "load_ms": 5.0}


def _parity(cos, max_abs, task=None, src_task=None, passed=True, failures=()):
    return {"outputs": [{"name": "output", "max_abs": max_abs, "mean_abs": max_abs / 10, "rel_l2": 1 - cos,
                         "cosine_mean": cos, "cosine_min": cos - 1e-4,
                         "top1_agreement": 0.99 if task is not None else None,
                         "top5_agreement": 1.0 if task is not None else None}],
            "n": 450, "passed": passed, "failures": list(failures), "worst_output": "output",
            "task_metric": "accuracy" if task is not None else None, "task_value": task, "task_source": src_task,
            "task_delta_points": None if task is None else 100 * (task - src_task), "synthetic": False}


def _records():
    base = {"run_id": "20261122T224826-23a432", "edgekit": "0.1.0", "model": "digits_cnn",
            "source": "examples/digits_cnn.py:build", "source_sha256": "e76827bf" * 8,
            "data": {"name": "digits", "calibration_samples": 300, "evaluation_samples": 450, "synthetic": False,
                     "notes": ["calibration: 300 samples of the training split; evaluation: 450 held-out samples"]}}
    src_acc = 0.9867
    recs = [dict(base, target="source", label="torch eager fp32", status="reference", format="torch",
                 size_bytes=110000, bench=_bench(0.171), device={"name": "local", "kind": "local", "emulated": False},
                 task={"metric": "accuracy", "value": src_acc})]
    targets = [  # name, recipe, runtime, size, p50, cosine, max abs, accuracy, route
        ("onnx", "none", "onnxruntime", 109570, 0.0257, 0.99999999, 1.1e-5, 0.9867, ["OnnxFromTorch"]),
        ("onnx-fp16", "fp16", "onnxruntime", 64180, 0.0339, 0.9999999, 5.7e-3, 0.9867,
         ["OnnxFromTorch", "Fp16OnnxFromOnnx"]),
        ("onnx-int8", "int8-static", "onnxruntime", 42749, 0.0319, 0.998, 4.5, 0.9844,
         ["OnnxFromTorch", "QuantizedOnnxFromOnnx"]),
        ("tflite", "none", "litert", 96132, 0.0169, 0.99999999, 1.1e-5, 0.9867,
         ["OnnxFromTorch", "SavedModelFromOnnx", "TfliteFromSavedModel"]),
        ("tflite-int8", "int8-static", "litert", 32328, 0.0213, 0.99996, 1.9, 0.9844,
         ["OnnxFromTorch", "SavedModelFromOnnx", "TfliteFromSavedModel"]),
    ]
    devices = [({"name": "local", "kind": "local", "emulated": False, "labels": {}, "probe": PROBE}, 1.0),
               ({"name": "rpi5", "kind": "ssh", "emulated": False, "labels": {"board": "rpi5"},
                 "probe": dict(PROBE, arch="aarch64", cpu="Cortex-A76", cpu_count=4)}, 2.5),
               ({"name": "arm64-emu", "kind": "qemu-arm64", "emulated": True, "labels": {},
                 "probe": dict(PROBE, arch="aarch64", cpu="QEMU")}, 14.0)]
    for dev, slow in devices:
        for name, recipe, rt, size, p50, cos, mabs, acc, route in targets:
            r = dict(base, target=name, format=rt, recipe=recipe, runtime=rt, runtime_version="1.32.0",
                     artifact=f"/tmp/out/digits_cnn/{name}/model", size_bytes=size, route=route, cached=False,
                     convert_s=0.5, device=copy.deepcopy(dev), status="ok",
                     parity=_parity(cos, mabs, acc, src_acc), bench=_bench(p50 * slow))
            if dev["name"] == "local":
                r["speedup_vs_source"] = 0.171 / p50
            recs.append(r)
    recs.append(dict(base, target="coreml", format="coreml", recipe="none", runtime="coremltools",
                     status="conversion_failed", convert_s=0.1,
                     reason="Every route to 'coreml' failed: <script>alert(1)</script> & friends"))
    # a second model, cosine only (no labels), measured on random inputs
    mb = dict(base, model="minilm", run_id="20261122T230844-d9ab9e", source="examples/minilm.py:build",
              source_sha256="1ef90f0e" * 8,
              data={"name": "random", "calibration_samples": 100, "evaluation_samples": 220, "synthetic": True,
                    "notes": ["random inputs"]})
    local = devices[0][0]
    recs.append(dict(mb, target="source", label="torch eager fp32", status="reference", format="torch",
                     size_bytes=None, bench=_bench(27.0), device={"name": "local", "kind": "local",
                                                                  "emulated": False}))
    for name, size, p50, cos, passed in (("onnx", 90828890, 20.4, 0.9999999, True),
                                         ("onnx-int8-dynamic", 22826398, 12.6, 0.9916, True),
                                         ("onnx-int8", 22820244, 25.4, 0.8598, False)):
        r = dict(mb, target=name, format="onnx", recipe="int8", runtime="onnxruntime", runtime_version="1.32.0",
                 size_bytes=size, route=["OnnxFromTorch"], device=copy.deepcopy(local),
                 status="ok" if passed else "parity_failed", parity=_parity(cos, 0.1, passed=passed,
                                                                           failures=() if passed else
                                                                           ["output: cosine 0.85983 < 0.98"]),
                 bench=_bench(p50), speedup_vs_source=27.0 / p50)
        r["parity"]["synthetic"] = True
        if not passed:
            r["reason"] = "output: cosine 0.85983 < 0.98"
        recs.append(r)
    recs.append(dict(mb, target="tflite-int8-dynamic", format="tflite", recipe="int8-dynamic", runtime="litert",
                     size_bytes=20322520, route=["TfliteFromTorch"], device=copy.deepcopy(local),
                     status="run_failed", reason="the runner on local failed while loading model.tflite"))
    return recs


# --------------------------------------------------------------------------------------------
# The Pareto front


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _brute_front(points, maximize=None):
    signed = [tuple(-v if maximize and maximize[k] else v for k, v in enumerate(p)) for p in points]
    return {i for i, p in enumerate(signed) if not any(_dominates(q, p) for j, q in enumerate(signed) if j != i)}


@pytest.mark.parametrize("dims,maximize", [(2, None), (2, (False, True)), (2, (True, True)), (3, None),
                                           (3, (False, True, False))])
def test_pareto_front_matches_brute_force(dims, maximize):
    rng = random.Random(1234 + dims)
    for trial in range(400):
        n = rng.randint(0, 25)
        if trial % 2:  # a coarse grid: many ties and exact duplicates
            pts = [tuple(rng.randint(0, 4) for _ in range(dims)) for _ in range(n)]
        else:
            pts = [tuple(rng.uniform(0, 10) for _ in range(dims)) for _ in range(n)]
        got = pareto_front(pts, maximize=maximize)
        assert len(got) == len(set(got))
        assert set(got) == _brute_front(pts, maximize), (pts, got)
        if dims == 2:  # in drawing order: along the first coordinate
            xs = [pts[i][0] * (-1 if maximize and maximize[0] else 1) for i in got]
            assert xs == sorted(xs)


def test_pareto_front_edge_cases():
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 2.0)]) == [0]
    assert pareto_front([(1, 1), (1, 1), (2, 2)]) == [0, 1]  # duplicates of a front point are both on it
    assert pareto_front([(1, 5), (2, 2), (5, 1), (3, 3)]) == [0, 1, 2]
    assert pareto_front([(1, 1), (1, 2), (2, 1)]) == [0]  # ties on one axis are dominated
    assert pareto_front([(1, None), (2, float("nan")), (3, 3)]) == [2]  # missing values never on it
    # latency down, accuracy up
    assert pareto_front([(10, 0.99), (5, 0.98), (20, 0.97), (5, 0.95)], maximize=(False, True)) == [1, 0]
    with pytest.raises(ValueError):
        pareto_front([(1, 2), (1, 2, 3)])


# --------------------------------------------------------------------------------------------
# The page


def _charts(page: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="chart"[^>]*aria-label="([^"]*)".*?</svg>',
                                                         page, re.S)}


def test_html_holds_every_target_and_every_section():
    recs = _records()
    page = html_report(recs, title="sweep <1>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>sweep &lt;1&gt;</title>" in page
    for r in recs:
        assert f"<b>{r['target']}</b>" in page, r["target"]
    for dev in ("local", "rpi5", "arm64-emu"):
        assert dev in page
    for section in ("Results", "Trade-offs", "Latency distributions", "Parity per target",
                    "Environment and provenance"):
        assert f"<h2>{section}</h2>" in page
    charts = _charts(page)
    assert set(charts) == {f"{m}: {what}" for m in ("digits_cnn", "minilm")
                           for what in ("latency against size", "latency distributions", "parity per target")} | {
        "digits_cnn: latency against accuracy", "minilm: latency against worst cosine"}
    # provenance: hashes, run ids, routes, probes
    assert "e76827bf" * 8 in page and "20261122T230844-d9ab9e" in page
    assert "QuantizedOnnxFromOnnx" in page and "Cortex-A76" in page and "board=rpi5" in page
    # random inputs: a red warning; emulated timings labelled
    assert 'class="banner synthetic"' in page and "RANDOM INPUTS (minilm)" in page
    assert "emulated: not device speed" in page
    # reasons are escaped, never markup
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in page


def test_emulated_timings_stay_out_of_the_speed_scatters():
    charts = _charts(html_report(_records()))
    for name, svg in charts.items():
        if "latency against" in name:
            assert "arm64-emu" not in svg, name
            assert "<circle" in svg or "<path" in svg
    assert "arm64-emu" in charts["digits_cnn: latency distributions"]  # shown there, labelled
    assert "emulated: not device speed" in charts["digits_cnn: latency distributions"]


def test_pareto_front_is_drawn_per_device():
    charts = _charts(html_report(_records()))
    svg = charts["digits_cnn: latency against size"]
    fronts = re.findall(r'<polyline points="[^"]*" class="front" stroke="([^"]+)"', svg)
    assert len(fronts) == 2 and len(set(fronts)) == 2  # local and rpi5, each its own colour
    # minilm: the int8-dynamic artifact is both fastest and smallest, the whole front (a point, no
    # line); the parity-failed one is a red cross, never on the front
    minilm = charts["minilm: latency against size"]
    assert 'class="plab front-lab">onnx-int8-dynamic<' in minilm
    assert 'class="front"' not in minilm
    assert "onnx-int8 on local (PARITY FAILED)" in minilm and 'class="plab fail-lab">onnx-int8<' in minilm


def test_page_is_self_contained():
    page = html_report(_records())
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page and "url(" not in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "http://" not in page and "https://" not in page


def test_empty_and_odd_records_still_render():
    assert "No records" in html_report([])
    odd = [{"model": "m", "target": "t", "status": "run_failed"}, {"target": "source", "status": "reference"},
           {"model": "m", "target": "x", "status": "ok", "bench": {"p50_ms": 1.0},
            "parity": {"outputs": [], "passed": True}, "device": {"name": "d"}}]
    page = html_report(odd)
    assert "<b>t</b>" in page and "<b>x</b>" in page


def test_csv_report_is_flat_and_complete():
    recs = _records()
    text = csv_report(recs)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(csv.reader(io.StringIO(text)).__next__()) == CSV_COLUMNS
    assert len(rows) == len(recs)
    onnx_int8_emu = next(r for r in rows if r["model"] == "digits_cnn" and r["target"] == "onnx-int8"
                         and r["device"] == "arm64-emu")
    assert onnx_int8_emu["emulated"] == "true" and onnx_int8_emu["status"] == "ok"
    assert onnx_int8_emu["route"] == "OnnxFromTorch > QuantizedOnnxFromOnnx"
    assert math.isclose(float(onnx_int8_emu["p50_ms"]), 0.0319 * 14)
    assert math.isclose(float(onnx_int8_emu["task_delta_points"]), 100 * (0.9844 - 0.9867))
    src = rows[0]
    assert src["target"] == "source" and src["task_metric"] == "accuracy" and src["task_value"] == "0.9867"
    failed = next(r for r in rows if r["target"] == "coreml")
    assert failed["p50_ms"] == "" and failed["device"] == "" and "<script>" in failed["reason"]


def test_write_html_is_atomic(tmp_path):
    path = tmp_path / "sub" / "report.html"
    write_html(_records(), path)
    path.write_text("old")
    out = write_html(_records(), path, title="again")
    assert out == path and path.read_text() == html_report(_records(), title="again")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temp file left behind


# --------------------------------------------------------------------------------------------
# A real browser: headless Chromium opens the page from disk, renders it, and logs no console error.

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
# Chromium logs every console message as "...:INFO:CONSOLE:<line>] "<text>", source: ..." (older
# builds: "CONSOLE(<line>)"); the page has no script, so any console line at all is a failure.
CONSOLE_ERRORS = re.compile(r"Uncaught|CONSOLE[:(]\d+|Failed to load resource|net::ERR_")


def _chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="edgekit-chromium-") as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=60)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    page = tmp_path / "report.html"
    write_html(_records(), page, title="edgekit report: browser check")
    url = page.resolve().as_uri()

    # the console check can see errors at all: a page that throws is caught
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><p>x</p><script>throw new Error('edgekit-control-error')</script>")
    ctl = _chromium(control.resolve().as_uri(), "--dump-dom")
    assert re.search(r"CONSOLE[:(]\d+\)?\] \"Uncaught Error: edgekit-control-error", ctl.stderr), ctl.stderr[-2000:]

    dom = _chromium(url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not CONSOLE_ERRORS.search(dom.stderr), dom.stderr[-2000:]
    assert dom.stdout.count('<svg class="chart"') == 8  # 2 models x (2 scatters, latency, parity)
    assert dom.stdout.count("<polyline") >= 4 and "emulated: not device speed" in dom.stdout

    shot = tmp_path / "report.png"
    res = _chromium(url, f"--screenshot={shot}", "--window-size=1400,3000")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    assert not CONSOLE_ERRORS.search(res.stderr), res.stderr[-2000:]
    keep = os.environ.get("EDGEKIT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_html.png")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 3000)
    px = np.asarray(img).reshape(-1, 3).astype(np.int32)
    distinct = len(np.unique(px[:, 0] << 16 | px[:, 1] << 8 | px[:, 2]))
    assert distinct > 500, f"the page looks blank or flat: {distinct} colours"
    inked = float((px.min(axis=1) < 225).mean())  # the page background is #f8fafc
    assert inked > 0.04, f"only {inked:.1%} of the page is drawn on"
    top = px[: 1400 * 400]  # the red random-input banner is on screen near the top
    assert ((top[:, 0] > 180) & (top[:, 1] < 90) & (top[:, 2] < 90)).sum() > 200, "no red warning at the top"


# --------------------------------------------------------------------------------------------
# Reading the results (issue 10)


def test_best_accuracy_card_says_all_tie_or_names_the_tied():
    recs = _records()
    for r in recs:
        if r["model"] == "digits_cnn" and r.get("parity"):
            r["parity"]["task_value"], r["parity"]["task_delta_points"] = 0.9867, 0.0
    page = html_report(recs)
    assert '<div class="k">best accuracy</div><div class="v">all tie</div>' in page
    recs[3]["parity"]["task_value"] = 0.99  # onnx-int8 on local: better than the rest
    page = html_report(recs)
    assert '<div class="k">best accuracy</div><div class="v">onnx-int8</div>' in page
    recs[5]["parity"]["task_value"] = 0.99  # and tflite-int8: two of five tie
    assert '<div class="v">onnx-int8, tflite-int8 (tie)</div>' in html_report(recs)


def test_coincident_points_share_one_label_naming_both():
    from edgekit.reports.scatter import scatter

    pts = [dict(x=1.0, y=100.0, text="onnx-int8", num=1, colour="#000", kind="ok", tip="a"),
           dict(x=1.0, y=100.0, text="tflite-int8", num=2, colour="#000", kind="front", tip="b"),
           dict(x=3.0, y=300.0, text="onnx", num=3, colour="#000", kind="ok", tip="c")]
    svg, numbered = scatter(pts, [], "ms", "size", "x", "y", "t")
    labels = re.findall(r'class="plab[^"]*">([^<]*)</text>', svg)
    assert "tflite-int8 / onnx-int8" in labels or {"1,2"} & set(labels), labels
    assert not {"onnx-int8", "tflite-int8"} & set(labels)  # never one label drawn over the other
    assert "same spot as: onnx-int8" in svg and "same spot as: tflite-int8" in svg


def test_paths_break_at_slashes_only_and_the_page_is_titled_by_its_models():
    page = html_report(_records())
    assert "/<wbr>tmp/<wbr>out/<wbr>digits_cnn/<wbr>onnx/<wbr>model" in page
    assert not re.search(r"\.path\{[^}]*(break-all|overflow-wrap:anywhere)", page)
    assert "<title>edgekit report: digits_cnn, minilm</title>" in page


def test_html_legend_and_noisy_speed_ups():
    recs = _records()
    recs[0]["bench"].update(noisy=True, noisy_why=["a tenth of the runs are 45%+ faster than the median"])
    for r in recs[1:6]:
        r["speedup_noisy"] = True
    page = html_report(recs)
    assert "<b>Legend.</b> Every target is compared with the source model on the same 450 held-out samples" in page
    assert "<dt>accuracy (Δ pts)</dt>" in page and "<dt>max err</dt>" in page and "<dt>(noisy), ⚠</dt>" in page
    assert page.count('class="noisy-sp"') >= 5 and "the speed-ups of onnx, onnx-fp16" in page
    assert "a tenth of the runs are 45%+ faster than the median" in page
    results = re.search(r'<table class="results">(.*?)</table>', page, re.S).group(1)
    assert "<th class=\"num\">accuracy (Δ pts)</th>" in results and ">worst cosine<" in results


def test_training_recipes_are_series_of_their_own():
    """One device and training recipes in the run: each recipe is a series (a colour and a Pareto front of
    its own), so the report shows accuracy vs latency vs size with the recipe as the series."""
    recs = [r for r in _records() if r["model"] == "digits_cnn" and (r.get("device") or {}).get("name") == "local"]
    pruned = []
    for r in recs:
        if r["target"] in ("onnx", "tflite"):
            p = copy.deepcopy(r)
            p["target"] = r["target"] + "@prune-structured-30"
            p["size_bytes"] = r["size_bytes"] // 2
            p["bench"] = _bench(r["bench"]["p50_ms"] * 0.7)
            p["prepared"] = [{"recipe": "prune-structured-30", "kind": "prune-structured"}]
            pruned.append(p)
    charts = _charts(html_report(recs + pruned))
    svg = charts["digits_cnn: latency against size"]
    # the plain targets and the pruned ones in two colours (a one-point front draws no line)
    assert len(set(re.findall(r'fill="(#[0-9a-f]{6})"', svg)) - {"#ffffff", "#fff", "#475569"}) >= 2
    page = html_report(recs + pruned)
    assert "Pareto front of recipe prune-structured-30" in page and "Pareto front of no training recipe" in page
    # without training recipes the series stay the devices
    assert "Pareto front on local" in html_report(recs)
