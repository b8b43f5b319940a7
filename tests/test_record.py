"""Record, the one typed view of a results.jsonl line: it round-trips exactly (unknown keys, nulls,
key order), its derived figures match hand computations, and every report (console, Markdown,
CSV, HTML) shows the same status text and the same worst cosine for the same record."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.reports import (
    STATUS_TEXT,
    Record,
    csv_report,
    html_report,
    latest_records,
    load_records,
    markdown,
    status_text,
    table,
)
from edgekit.reports.fmt import cosine_text

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"


def _two_outputs(worst_output="logits"):
    """A parity failure on an emulated device, two outputs, unknown keys at every level."""
    return {
        "run_id": "20261122T230655-f0c546", "edgekit": "0.1.0", "model": "digits_cnn", "target": "tflite-int8",
        "status": "parity_failed", "reason": "logits: cosine 0.86 < 0.98", "size_bytes": 30112,
        "future_key": {"nested": [1, 2, {"x": None}]}, "artifact_sha256": None,
        "device": {"name": "pi-emu", "kind": "qemu-arm64", "emulated": True, "labels": {"board": "rpi4"},
                   "probe": {"arch": "aarch64"}, "serial": "abc"},
        "parity": {"outputs": [{"name": "logits", "cosine_mean": 0.86, "cosine_min": 0.41, "max_abs": 9.1,
                                "mean_abs": 1.2, "rel_l2": 0.5, "new_metric": 3},
                               {"name": "embedding", "cosine_mean": 0.95, "cosine_min": 0.70, "max_abs": 12.0,
                                "mean_abs": 0.3, "rel_l2": 0.2}],
                   "n": 450, "passed": False, "failures": ["logits: cosine 0.86 < 0.98"],
                   "worst_output": worst_output, "task_metric": "accuracy", "task_value": 0.79,
                   "task_source": 0.9867, "task_delta_points": -19.67, "synthetic": False},
        "bench": {"n": 100, "p50_ms": 1.9, "p90_ms": 2.5, "p99_ms": 4.0, "median_ci95_ms": [1.8, 2.0],
                  "noisy": True, "gpu_ms": 0.2},
    }


# --------------------------------------------------------------------------------------------
# Round trip


def test_round_trip_keeps_unknown_keys_nulls_and_order():
    d = _two_outputs()
    r = Record.from_json(d)
    out = r.to_json()
    assert out == d and json.dumps(out) == json.dumps(d)  # the same line, key order included
    assert r.extra == {"future_key": {"nested": [1, 2, {"x": None}]}}
    assert r.device.extra == {"serial": "abc"} and r.bench.extra == {"gpu_ms": 0.2}
    assert r.parity.outputs[0].extra == {"new_metric": 3}
    assert r.artifact_sha256 is None and "artifact_sha256" in out  # present as null stays null
    out["future_key"]["nested"].append(4)  # to_json hands out copies: the record is unchanged
    assert r.to_json() == d
    d["device"]["name"] = "changed"  # and from_json took copies
    assert r.device_name == "pi-emu"


def test_odd_shapes_load_and_write_back_as_they_were():
    for d in ({}, {"target": "t"}, {"parity": None, "bench": None}, {"parity": [1, 2], "route": "a>b"},
              {"device": "local", "bench": {"p50_ms": "fast", "median_ci95_ms": 3}},
              {"parity": {"outputs": [{"name": "o"}, "junk"]}}, {"extra": 1, "json_keys": 2}):
        r = Record.from_json(copy.deepcopy(d))
        assert r.to_json() == d and list(r.to_json()) == list(d), d
        table([r]), markdown([r]), csv_report([r]), html_report([r])  # every report still renders
    r = Record.from_json({"bench": {"p50_ms": "fast"}, "device": "local"})
    assert r.p50_ms is None and not r.timed and r.device is None and r.extra == {"device": "local"}
    with pytest.raises(TypeError):
        Record.from_json([1, 2])


def test_a_changed_record_writes_its_new_values():
    from dataclasses import replace

    r = Record.from_json(_two_outputs())
    r2 = replace(r, status="ok", reason=None, speedup_vs_source=2.5)
    out = r2.to_json()
    assert out["status"] == "ok" and out["speedup_vs_source"] == 2.5
    assert out["reason"] is None  # present before: kept as null, not dropped
    assert out["future_key"] == r.extra["future_key"]


# --------------------------------------------------------------------------------------------
# Derived figures, against hand computations


def test_derived_figures():
    r = Record.from_json(_two_outputs())
    assert r.status == "parity_failed" and r.status_text == "PARITY FAILED" and r.failed and not r.ok
    assert not r.passed and not r.is_source and r.name == "tflite-int8"
    assert r.worst.name == "logits" and r.worst_cosine == 0.86 and r.worst_max_abs == 9.1
    assert r.task_metric == "accuracy" and r.task_value == 0.79 and r.task_delta == -19.67
    assert r.task_text == "79.00% (-19.67)"
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == (1.9, 2.5, 4.0) and r.noisy and r.timed
    assert r.bench.ci95 == (1.8, 2.0)
    assert r.size == 30112 and r.size_text == f"{30112 / 1024:.1f} KB" == "29.4 KB"
    assert r.size_mb == pytest.approx(30112 / 2 ** 20)
    assert r.device_name == "pi-emu" and r.emulated and r.key == ("digits_cnn", "tflite-int8", "pi-emu")
    assert r.speedup is None and r.speedup_text == "-"

    # the worst output is the named one; without a name, the lowest mean cosine
    assert Record.from_json(_two_outputs(worst_output="embedding")).worst_max_abs == 12.0
    d = _two_outputs()
    del d["parity"]["worst_output"]
    d["parity"]["outputs"][0]["cosine_mean"] = float("nan")
    assert Record.from_json(d).worst_cosine == 0.95  # NaN never wins


def test_source_row_and_missing_figures():
    src = Record.from_json({"target": "source", "status": "reference", "label": "torch eager fp32",
                            "size_bytes": None, "task": {"metric": "accuracy", "value": 0.9866666},
                            "bench": {"p50_ms": 0.17, "median_ci95_ms": None}})
    assert src.is_source and src.name == "source" and src.status_text == "reference" and not src.failed
    assert src.task_value == 0.9866666 and src.task_delta is None and src.task_text == "98.67%"
    assert src.speedup == 1.0 and src.speedup_text == "1.00x" and src.bench.ci95 == (0.17, 0.17)
    assert src.size is None and src.size_text == "-" and src.worst is None and src.worst_cosine is None
    assert src.key == (None, "source", "local")  # no device: matched as the local machine
    empty = Record.from_json({})
    assert empty.status_text == "?" and empty.task_text == "-" and empty.p50_ms is None and not empty.noisy
    assert status_text("weird") == "weird" and set(STATUS_TEXT) == {"ok", "reference", "parity_failed",
                                                                    "conversion_failed", "run_failed", "measured",
                                                                    "needs_device"}
    for n, text in ((0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (5 * 2 ** 20, "5.00 MB"), (3 * 2 ** 30, "3.00 GB")):
        assert Record.from_json({"size_bytes": n}).size_text == text


def test_latest_record_per_key_and_dicts_or_records():
    a = dict(_two_outputs(), run_id="1")
    b = dict(_two_outputs(), run_id="2", status="ok")
    latest = latest_records([a, Record.from_json(b)])
    assert list(latest) == [("digits_cnn", "tflite-int8", "pi-emu")] and latest[("digits_cnn", "tflite-int8",
                                                                                   "pi-emu")].status == "ok"
    assert table([a, b]) == table([Record.from_json(a), Record.from_json(b)])


# --------------------------------------------------------------------------------------------
# A real run: records from `edgekit run` on the digits example, and the reports it wrote


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """`edgekit run` on the digits CNN: the source, two ONNX targets that pass and a strict one that
    fails parity. Returns the output folder and what the command printed."""
    tmp = tmp_path_factory.mktemp("record-run")
    specs = tmp / "specs" / "targets"
    specs.mkdir(parents=True)
    (specs / "onnx-int8-strict.toml").write_text(
        'name = "onnx-int8-strict"\nformat = "onnx"\nrecipe = "int8-static"\nruntime = "onnxruntime"\n'
        'extension = ".onnx"\n[tolerance]\nmin_cosine = 0.999999\nmax_abs = 1e-6\n')
    env = dict(os.environ, EDGEKIT_SPECS=str(tmp / "specs"))
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", MODEL, "--targets", "onnx,onnx-int8,onnx-int8-strict",
                        "--data", "digits", "--out", str(tmp / "out"), "--min-runs", "20", "--min-seconds", "0.1"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 1, r.stderr[-3000:]  # the strict target fails parity
    return tmp / "out" / "digits_cnn", r.stdout


@pytest.mark.onnx
def test_real_records_round_trip_exactly(digits_run):
    folder, _ = digits_run
    lines = (folder / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        d = json.loads(line)
        r = Record.from_json(d)
        assert r.to_json() == d
        assert json.dumps(r.to_json(), default=str) == line  # byte for byte, as the pipeline wrote it
    records = load_records(folder / "results.jsonl")
    assert all(isinstance(r, Record) for r in records)
    assert [r.status for r in records] == ["reference", "ok", "ok", "parity_failed"]


@pytest.mark.onnx
def test_real_records_derived_figures_by_hand(digits_run):
    folder, _ = digits_run
    for line in (folder / "results.jsonl").read_text().splitlines():
        d = json.loads(line)
        r = Record.from_json(d)
        assert r.key == (d["model"], d["target"], d["device"]["name"])
        assert r.p50_ms == d["bench"]["p50_ms"] and r.p90_ms == d["bench"]["p90_ms"]
        assert r.p99_ms == d["bench"]["p99_ms"] and r.noisy == d["bench"]["noisy"]
        assert r.emulated is False and r.device_name == "local"
        if d["target"] == "source":
            assert r.is_source and r.task_value == d["task"]["value"] and r.task_delta is None
            continue
        p = d["parity"]
        worst = min(p["outputs"], key=lambda o: o["cosine_mean"])
        assert r.worst.name == worst["name"] == p["worst_output"]
        assert r.worst_cosine == worst["cosine_mean"] and r.worst_max_abs == worst["max_abs"]
        assert r.task_value == p["task_value"] and r.task_delta == p["task_delta_points"]
        assert r.task_text == f"{100 * p['task_value']:.2f}% ({p['task_delta_points']:+.2f})"
        assert r.passed == p["passed"] == (d["status"] == "ok")
        assert r.size == d["size_bytes"] and r.size_text == f"{d['size_bytes'] / 1024:.1f} KB"
        assert r.speedup == d["speedup_vs_source"] and r.speedup_text == f"{d['speedup_vs_source']:.2f}x"


def _console_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    end = lines.index("")
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines[2:end]]


def _markdown_rows(md: str) -> list[list[str]]:
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")][1:]  # less the header
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in rows]


def _html_rows(page: str) -> list[str]:
    results = re.search(r'<table class="results">(.*?)</table>', page, re.S).group(1)
    return re.findall(r"<tr class=.*?</tr>", results, re.S)


@pytest.mark.onnx
def test_every_report_shows_the_same_status_and_worst_cosine(digits_run):
    folder, stdout = digits_run
    records = load_records(folder / "results.jsonl")
    console, md = _console_rows(stdout), _markdown_rows((folder / "report.md").read_text())
    csv_rows = list(csv.DictReader(io.StringIO((folder / "results.csv").read_text())))
    html_rows = _html_rows((folder / "report.html").read_text())
    assert len(console) == len(md) == len(csv_rows) == len(html_rows) == len(records) == 4
    seen = set()
    for r, con, mdr, c, h in zip(records, console, md, csv_rows, html_rows):
        status, cos = r.status_text, cosine_text(r.worst_cosine)
        seen.add(status)
        # console and Markdown: the same cells (status, then "(noisy)" when the machine was)
        assert con[2].removesuffix(" (noisy)") == status and mdr[2].removesuffix(" (noisy)") == status
        assert con[5] == mdr[5] == cos
        # CSV: the raw key, the same text, the same number
        assert c["status"] == r.status and c["status_text"] == status and c["target"] == r.target
        if r.worst_cosine is None:
            assert c["cosine_mean"] == "" and cos == "-"
        else:
            assert float(c["cosine_mean"]) == r.worst_cosine
        # HTML: the row of this target holds the same status pill and cosine text
        assert f"<b>{r.name}</b>" in h and f">{status}</span>" in h
        assert (f">{cos}</span>" in h) if r.worst_cosine is not None else ('<td class="num">-</td>' in h)
    assert seen == {"reference", STATUS_TEXT["ok"], STATUS_TEXT["parity_failed"]}
    # and the console of records loaded back is the one `edgekit run` printed
    assert table(records) == stdout[: len(table(records))]
    assert math.isfinite(records[1].worst_cosine)


@pytest.mark.onnx
def test_real_run_reads_without_a_manual(digits_run, tmp_path):
    """Issue 10, on a real run: the console table has its legend, max err is read against the source
    output's scale, the same in every report, and `edgekit report FILE` titles the page by model."""
    folder, stdout = digits_run
    records = load_records(folder / "results.jsonl")
    con, md = _console_rows(stdout), _markdown_rows((folder / "report.md").read_text())
    assert stdout.splitlines()[0].split()[4:9] == ["accuracy", "(Δ", "pts)", "worst", "cosine"]
    for r, c, m in zip(records, con, md):
        if r.is_source:
            continue
        w = r.worst
        assert w.ref_max_abs > 0 and r.worst_rel_err == pytest.approx(w.max_abs / w.ref_max_abs)
        assert c[6] == m[6] == r.max_err_text and r.max_err_text.endswith("%")
        assert c[9].removesuffix(" ⚠") == m[9].removesuffix(" ⚠") == r.speedup_text
        assert c[9].endswith(" ⚠") == r.speedup_warn == bool(r.speedup_noisy or r.noisy)
    legend = stdout[stdout.index("Legend."):]
    for term in ("accuracy (Δ pts)", "worst cosine", "max err", "p50 / p90 ms", "speed-up", "(noisy), ⚠"):
        assert f"\n  {term}" in legend, term
    assert "450 held-out samples of 'digits'" in legend
    r = subprocess.run([sys.executable, "-m", "edgekit", "report", str(folder / "results.jsonl"), "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "report.html").read_text()
    assert "<title>edgekit report: digits_cnn</title>" in page and "html:     " in r.stdout
    passed = [x for x in records if x.ok and x.task_value is not None]
    if len({x.task_value for x in passed}) == 1 and len(passed) > 1:  # every passing target as accurate
        assert '<div class="k">best accuracy</div><div class="v">all tie</div>' in page
