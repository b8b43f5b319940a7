"""The main job: convert a source to each target, check parity, benchmark, and write records.

One record (a dict, one JSONL line) per (target, device), plus one for the source model itself.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__
from .artifacts import size_bytes
from .convert import convert
from .devices import LocalDevice
from .errors import EdgekitError, RunnerError
from .parity import compare
from .session import RunnerSession
from .specs import Target, Tolerance
from .stats import latency_stats

RUNTIME_BY_SUFFIX = {".onnx": "onnxruntime", ".tflite": "litert"}


@dataclass(frozen=True)
class BenchOptions:
    threads: int = 1
    warmup: int = 10
    min_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 30.0

    def params(self) -> dict:
        return {"warmup": self.warmup, "min_runs": self.min_runs, "min_seconds": self.min_seconds,
                "max_seconds": self.max_seconds}


def bench_summary(raw: dict, threads: int) -> dict:
    out = latency_stats(raw["times_s"])
    out.update(first_ms=raw["first_s"] * 1000.0, warmup=raw.get("warmup"), threads=threads, batch=raw.get("batch", 1))
    if "peak_rss_kb" in raw:
        out.update(peak_rss_mb=raw["peak_rss_kb"] / 1024.0, runner_base_rss_mb=raw["rss_start_kb"] / 1024.0)
    return out


def measure(artifact: Path, runtime: str, dataset, reference: dict | None, tolerance: Tolerance,
            device_factory=LocalDevice, bench: BenchOptions | None = BenchOptions()) -> dict:
    """Parity and/or benchmark of one artifact on one device, in a fresh runner process."""
    rec: dict = {}
    with device_factory() as device, RunnerSession(device) as session:
        rec["device"] = {"name": device.name, "emulated": device.emulated, "probe": session.env()}
        loaded = session.load(Path(artifact), runtime, threads=bench.threads if bench else 1)
        rec["load_s"] = loaded["load_s"]
        rec["runtime_version"] = loaded["runtime_version"]
        rec["io"] = {"inputs": loaded["inputs"], "outputs": loaded["outputs"]}
        if reference is not None:
            outputs = session.infer(dataset.eval)
            rec["parity"] = compare(reference, outputs, tolerance, dataset.labels, dataset.task,
                                    dataset.synthetic).to_json()
        if bench is not None:
            raw = session.bench(dataset.bench_sample(), **bench.params())
            rec["bench"] = bench_summary(raw, bench.threads)
            rec["bench"]["load_ms"] = loaded["load_s"] * 1000.0
    return rec


def run(source, dataset, targets: list[Target], out_root: Path = Path("out"), bench: BenchOptions = BenchOptions(),
        device_factory=LocalDevice, progress=None) -> list[dict]:
    """Convert, check parity and benchmark every target; return (and write) the records."""
    from .reference import reference_for

    progress = progress or (lambda msg: None)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    base = {"run_id": run_id, "edgekit": __version__, "model": source.name, "source": source.spec,
            "source_sha256": source.digest,
            "data": {"name": dataset.name, "calibration_samples": dataset.n_calib,
                     "evaluation_samples": dataset.n_eval, "synthetic": dataset.synthetic,
                     "notes": list(dataset.notes)}}
    progress(f"reference: {source.describe()}")
    ref = reference_for(source, device_factory)
    try:
        ref_out = ref.outputs(dataset.eval)
        ref_bench = bench_summary(ref.bench(dataset.bench_sample(), bench.threads, **bench.params()), bench.threads)
    finally:
        ref.close()
    labels_ok = dataset.labels is not None
    src_row = dict(base, target="source", label=ref.label, status="reference", format=source.format,
                   size_bytes=size_bytes(source.path) if source.path else None, bench=ref_bench,
                   device={"name": "local", "emulated": False})
    if labels_ok and dataset.task == "classification":
        from .parity import accuracy

        src_row["task"] = {"metric": "accuracy", "value": accuracy(next(iter(ref_out.values())), dataset.labels)}
    records = [src_row]
    for target in targets:
        row = dict(base, target=target.name, format=target.format, recipe=target.recipe, runtime=target.runtime)
        t0 = time.perf_counter()
        progress(f"{target.name}: converting")
        try:
            result = convert(source, target, dataset, out_root)
        except EdgekitError as e:
            row.update(status="conversion_failed", reason=str(e), convert_s=time.perf_counter() - t0)
            records.append(row)
            continue
        row.update(artifact=str(result.artifact), size_bytes=result.manifest["size_bytes"],
                   route=[s["edge"] for s in result.manifest["route"]], cached=result.cached,
                   convert_s=time.perf_counter() - t0, manifest=str(result.out_dir / "manifest.json"))
        progress(f"{target.name}: parity and benchmark")
        try:
            m = measure(result.artifact, target.runtime, dataset, ref_out, target.tolerance, device_factory, bench)
        except RunnerError as e:
            row.update(status="run_failed", reason=str(e))
            records.append(row)
            continue
        row.update(m)
        p = m["parity"]
        row["status"] = "ok" if p["passed"] else "parity_failed"
        if not p["passed"]:
            row["reason"] = "; ".join(p["failures"])
        if ref_bench["p50_ms"] and m["bench"]["p50_ms"]:
            row["speedup_vs_source"] = ref_bench["p50_ms"] / m["bench"]["p50_ms"]
        records.append(row)
    return records


def save_records(records: list[dict], out_root: Path) -> tuple[Path, Path]:
    from .artifacts import append_jsonl, write_text
    from .report import markdown

    model = records[0]["model"]
    folder = Path(out_root) / model
    jsonl = folder / "results.jsonl"
    append_jsonl(jsonl, records)
    md = folder / "report.md"
    write_text(md, markdown(records))
    return jsonl, md


def runtime_for(artifact: Path) -> str:
    rt = RUNTIME_BY_SUFFIX.get(Path(artifact).suffix.lower())
    if rt is None:
        from .errors import UserError

        raise UserError(f"'{artifact}' is not an artifact edgekit can run (.onnx or .tflite).")
    return rt


def manifest_target(artifact: Path) -> Target | None:
    """The target recorded in the manifest beside an artifact, if any."""
    from .specs import all_targets

    m = Path(artifact).parent / "manifest.json"
    if m.exists():
        name = json.loads(m.read_text()).get("target")
        return all_targets().get(name)
    return None


__all__ = ["BenchOptions", "measure", "run", "save_records", "asdict"]
