"""The corpus of third-party ONNX models (tests/corpus/models.py) through every ONNX and TFLite target.

Each model runs as a user would run it: ``python -m edgekit run MODEL.onnx --targets ALL --data
MODEL.npz``. The outcome is a table, one row per (model, target): status, the parity's worst output
(lowest mean cosine to ONNX Runtime fp32 on the source) as cosine min / mean rounded to 3
decimals, the task accuracy where the data has labels, or the reason it failed. The table is
checked in (tests/corpus/table.md); the test fails when a fresh run gives a different one, so a
regression -- or a fix -- shows as a diff. ``EDGEKIT_CORPUS_UPDATE=1`` rewrites it (and
tests/corpus/timings.md, how long each model took). ``EDGEKIT_CORPUS_MODELS=silero-vad,magika``
runs (and compares, or rewrites) only those models' rows. Slow: about half an hour on 2 cores.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.corpus.models import BY_NAME, CORPUS, MissingPackage, locate, write_data

pytestmark = [pytest.mark.slow, pytest.mark.onnx, pytest.mark.tflite]

TARGETS = ["onnx", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8", "onnx-int8-linear",
           "tflite", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"]
HERE = Path(__file__).resolve().parent / "corpus"
TABLE = HERE / "table.md"
TIMINGS = HERE / "timings.md"
RUN_TIMEOUT_S = 3600
MODELS_HEAD = ("| model | kind | package | file | size | inputs (data) |", "|---|---|---|---|---|---|")
RESULTS_HEAD = ("| model | target | status | cos min | cos mean | acc | reason |", "|---|---|---|---|---|---|---|")
PREAMBLE = """# The corpus: third-party ONNX models through every ONNX and TFLite target

Written by `tests/test_corpus.py` (slow); rewrite it with
`EDGEKIT_CORPUS_UPDATE=1 .venv/bin/python -m pytest -m slow tests/test_corpus.py`. Each model ran as
`edgekit run MODEL.onnx --targets <all ten> --data MODEL.npz --min-runs 5 --min-seconds 0.05`.
"cos min / cos mean": the parity's worst output (the lowest mean cosine to ONNX Runtime fp32 on the
source, over the held-out samples), rounded to 3 decimals. "acc": task accuracy on the held-out
samples, where the data has labels. "reason": why a target failed (numbers rounded, paths shortened).
"""


def _fmt(x, digits=3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _clean(text: str, replace: list[tuple[str, str]]) -> str:
    """One line, stable from run to run: no paths of this run, no addresses, numbers to 3 decimals."""
    for old, new in replace:
        text = text.replace(old, new)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(r"0x[0-9a-fA-F]{6,}", "0x...", text)
    text = re.sub(r"(?<![\w.])\d+\.\d{4,}(?:e[-+]?\d+)?", lambda m: f"{float(m.group()):.3f}", text)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 300 else text[:297] + "..."


def _model_line(model, path: Path) -> str:
    size = path.stat().st_size / 2**20
    where = model.file or "(exported: " + model.notes[0].split(": ", 1)[-1] + ")"
    return (f"| {model.name} | {model.kind} | {model.package}=={model.version} | {where} | {size:.1f} MB | "
            f"{model.inputs}" + (" [samples stacked on a new leading axis]" if model.stacked else "") + " |")


def _result_lines(model, records: list[dict], replace) -> list[str]:
    lines = []
    for r in records:
        status = r.get("status", "?")
        cmin = cmean = acc = ""
        p = r.get("parity")
        if p:
            worst = next(o for o in p["outputs"] if o["name"] == p["worst_output"])
            cmin, cmean = _fmt(worst["cosine_min"]), _fmt(worst["cosine_mean"])
            acc = _fmt(p.get("task_value"))
        elif r.get("task"):
            acc = _fmt(r["task"]["value"])
        reason = _clean(r.get("reason", ""), replace) if status not in ("ok", "reference") else ""
        lines.append(f"| {model.name} | {r['target']} | {status} | {cmin} | {cmean} | {acc} | {reason} |")
    return lines


def _edgekit_error(text: str) -> str:
    errors = [ln for ln in text.splitlines() if ln.startswith("edgekit: error:")]
    if errors:
        return errors[-1][len("edgekit: error:"):].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run_model(model, work: Path) -> tuple[list[str], str, float]:
    """Run one corpus model through every target with the CLI; (its table rows, its model line, seconds)."""
    import edgekit

    t0 = time.perf_counter()
    (work / "models").mkdir(parents=True, exist_ok=True)
    src = locate(model, work / "models")
    path = work / "models" / f"{model.name}.onnx"  # the model's name in edgekit's records
    if src != path:
        shutil.copyfile(src, path)
    data = write_data(model, work / f"{model.name}.npz")
    out = work / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(edgekit.__file__).resolve().parents[1])] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    argv = [sys.executable, "-m", "edgekit", "run", str(path), "--targets", ",".join(TARGETS), "--data", str(data),
            "--out", str(out), "--min-runs", "5", "--min-seconds", "0.05", "--max-seconds", "5"]
    try:
        # cwd: ONNX Runtime's quantization pre-processing leaves <uuid>.data and sym_shape_infer_temp.onnx
        # files in the working directory
        proc = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        output = f"edgekit: error: edgekit run did not finish within {RUN_TIMEOUT_S} s. " + str(e.stderr or "")[-300:]
    (work / f"{model.name}.log").write_text(output)
    replace = [(str(out / model.name), "<out>"), (str(out), "<out>"), (str(work), "<work>"),
               (str(Path(sys.prefix)), "<venv>")]
    jsonl = out / model.name / "results.jsonl"
    if jsonl.exists():
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        rows = _result_lines(model, records, replace)
    else:  # edgekit stopped before converting anything (the source or the data was refused)
        reason = _clean(_edgekit_error(output), replace)
        rows = [f"| {model.name} | source | error |  |  |  | {reason} |"]
        rows += [f"| {model.name} | {t} | not_run |  |  |  | (see source) |" for t in TARGETS]
    return rows, _model_line(model, path), time.perf_counter() - t0


def _parse(text: str) -> tuple[dict, dict]:
    """The checked-in table's model lines and result rows, by model name."""
    models, results, section = {}, {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        elif line.startswith("| ") and line not in MODELS_HEAD + RESULTS_HEAD and not line.startswith("|---"):
            name = line.split("|")[1].strip()
            if section == "models":
                models[name] = line
            elif section == "results":
                results.setdefault(name, []).append(line)
    return models, results


def render(models: dict, results: dict) -> str:
    order = [m.name for m in CORPUS] + sorted(set(models) - set(BY_NAME))
    out = [PREAMBLE, "## Models", "", *MODELS_HEAD]
    out += [models[n] for n in order if n in models]
    out += ["", "## Results", "", *RESULTS_HEAD]
    for n in order:
        out += results.get(n, [])
    return "\n".join(out) + "\n"


@pytest.mark.timeout(4 * 3600)  # the suite's 900 s is per test; this one runs every model
def test_corpus_table(tmp_path):
    names = [n.strip() for n in os.environ.get("EDGEKIT_CORPUS_MODELS", "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(BY_NAME))
    assert not unknown, f"EDGEKIT_CORPUS_MODELS: unknown {unknown}; the corpus has {sorted(BY_NAME)}"
    chosen = [BY_NAME[n] for n in names] if names else CORPUS
    old_text = TABLE.read_text() if TABLE.exists() else ""
    models, results = _parse(old_text)
    if not names:  # a full run: models that left the corpus leave the table
        models, results = {}, {}
    timings = []
    for model in chosen:
        try:
            rows, line, seconds = run_model(model, tmp_path)
        except MissingPackage as e:
            pytest.fail(f"corpus model {model.name}: {e}")
        models[model.name], results[model.name] = line, rows
        timings.append((model.name, seconds))
        print(f"\ncorpus: {model.name}: {seconds:.0f} s")
    new_text = render(models, results)
    if os.environ.get("EDGEKIT_CORPUS_UPDATE") == "1":
        TABLE.write_text(new_text)
        lines = ["# How long each corpus model took (the last EDGEKIT_CORPUS_UPDATE run)", "",
                 f"{os.cpu_count()} cores; seconds per model for `edgekit run` over all ten targets, data included.", "",
                 "| model | seconds |", "|---|---|"]
        old_t = {ln.split("|")[1].strip(): ln for ln in (TIMINGS.read_text().splitlines() if TIMINGS.exists() else [])
                 if ln.startswith("| ") and not ln.startswith("| model")}
        old_t.update({n: f"| {n} | {s:.0f} |" for n, s in timings})
        lines += [old_t[m.name] for m in CORPUS if m.name in old_t]
        lines.append(f"| total (this run) | {sum(s for _, s in timings):.0f} |")
        TIMINGS.write_text("\n".join(lines) + "\n")
        return
    fresh = tmp_path / "table.md"
    fresh.write_text(new_text)
    if new_text != old_text:
        diff = "".join(difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True),
                                            "tests/corpus/table.md (checked in)", "fresh run"))
        pytest.fail(f"the corpus table changed (fresh one: {fresh}; EDGEKIT_CORPUS_UPDATE=1 rewrites it):\n{diff}")
