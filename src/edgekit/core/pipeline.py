"""The main job: convert a source to each target, check parity, benchmark, and write records.

One record (a dict, one JSONL line) per (target, device), plus one for the source model itself.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from .convert import calibration_use, convert
from ..devices import LocalDevice
from .errors import EdgekitError, RunnerError
from .parity import compare
from .session import RunnerSession
from .specs import Target, Tolerance
from .stats import latency_stats


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
    if raw.get("runtime_timer"):  # the runtime's own timer on the same loaded model, beside edgekit's figures
        out["runtime_timer"] = raw["runtime_timer"]
    return out


def measure_in(session: RunnerSession, artifact: Path, runtime: str, dataset, reference: dict | None,
               tolerance: Tolerance, bench: BenchOptions | None = BenchOptions()) -> dict:
    """Parity and/or benchmark of one artifact in an open runner session (any device)."""
    rec: dict = {}
    loaded = session.load(Path(artifact), runtime, threads=bench.threads if bench else 1)
    rec["load_s"] = loaded["load_s"]
    rec["runtime_version"] = loaded["runtime_version"]
    rec["io"] = {"inputs": loaded["inputs"], "outputs": loaded["outputs"]}
    if reference is not None:
        outputs = session.infer(dataset.eval, dataset.stacked)
        rec["parity"] = compare(reference, outputs, tolerance, dataset.labels, dataset.task,
                                dataset.synthetic).to_json()
        usage = getattr(session, "last_usage", None)
        if usage:  # e.g. how many evaluation samples ran in each shape bucket
            rec["parity"]["usage"] = usage
    if bench is not None:
        raw = session.bench(dataset.bench_sample(), dataset.stacked, **bench.params())
        rec["bench"] = bench_summary(raw, bench.threads)
        if raw.get("usage"):  # what the timed sample ran in (its shape bucket)
            rec["bench"]["usage"] = raw["usage"]
        rec["bench"]["load_ms"] = loaded["load_s"] * 1000.0
    return rec


def device_record(device, probe: dict) -> dict:
    return {"name": device.name, "kind": device.kind, "emulated": device.emulated,
            "labels": dict(getattr(device, "labels", {}) or {}), "probe": probe}


def measure(artifact: Path, runtime: str, dataset, reference: dict | None, tolerance: Tolerance,
            device_factory=LocalDevice, bench: BenchOptions | None = BenchOptions()) -> dict:
    """Parity and/or benchmark of one artifact on one device, in a fresh runner session."""
    with device_factory() as device, RunnerSession(device, runtimes=[runtime]) as session:
        rec = measure_in(session, artifact, runtime, dataset, reference, tolerance, bench)
        rec["device"] = device_record(device, session.env())
    return rec


def reference_phase(source, dataset, bench: BenchOptions, progress=None) -> tuple[dict, dict, dict, dict]:
    """The source model on the eval inputs (reference outputs) and its own latency.
    Returns (base fields of every record, the source's record, reference outputs, its bench)."""
    from .reference import reference_for

    progress = progress or (lambda msg: None)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    base = {"run_id": run_id, "edgekit": __version__, "model": source.name, "source": source.spec,
            "source_sha256": source.digest,
            "data": {"name": dataset.name, "calibration_samples": dataset.n_calib,
                     "evaluation_samples": dataset.n_eval, "synthetic": dataset.synthetic,
                     "notes": list(dataset.notes), "split": dataset.split,
                     "shared_samples": dataset.shared_samples()}}
    progress(f"reference: {source.describe()}")
    ref = reference_for(source, LocalDevice)
    try:
        ref_out = ref.outputs(dataset.eval, dataset.stacked)
        ref_bench = bench_summary(ref.bench(dataset.bench_sample(), bench.threads, dataset.stacked, **bench.params()),
                                  bench.threads)
    finally:
        ref.close()
    src_row = dict(base, target="source", label=ref.label, status="reference", format=source.format,
                   size_bytes=source.size_bytes, bench=ref_bench,
                   device={"name": "local", "kind": "local", "emulated": False})
    if dataset.labels is not None and dataset.task == "classification":
        from .parity import accuracy

        src_row["task"] = {"metric": "accuracy", "value": accuracy(next(iter(ref_out.values())), dataset.labels)}
    return base, src_row, ref_out, ref_bench


@dataclass
class OnDevice:
    """A conversion whose best route has a step that must run on the target device: done per device,
    in the measure phase, with that device open."""

    source: object
    dataset: object
    out_root: Path

    def run(self, target: Target, row: dict, device) -> tuple[dict, object]:
        return _converted(self.source, target, self.dataset, self.out_root, dict(row), device)


def convert_one(source, target: Target, dataset, out_root: Path, base: dict):
    """Convert one target; returns (target, its record so far, ConvertResult, or None on failure, or
    an :class:`OnDevice` when the conversion must wait for the device)."""
    from .graph import plan

    row = dict(base, target=target.name, format=target.format, recipe="+".join(target.prepare + (target.recipe,)),
               runtime=target.runtime,
               data=dict(base["data"], **calibration_use(target, dataset)))
    usable = plan(source.format, target, source=source).usable
    if usable and (usable[0].on_device or target.foreign_to(None)):  # cross-built: proven on each device
        return target, row, OnDevice(source, dataset, out_root)
    row, result = _converted(source, target, dataset, out_root, row, None)
    return target, row, result


def _converted(source, target, dataset, out_root, row: dict, device) -> tuple[dict, object]:
    t0 = time.perf_counter()
    try:
        result = convert(source, target, dataset, out_root, device=device)
    except EdgekitError as e:
        row.update(status="conversion_failed", reason=str(e), convert_s=time.perf_counter() - t0)
        return row, None
    row.update(artifact=str(result.artifact), size_bytes=result.manifest["size_bytes"],
               artifact_sha256=result.manifest["artifact_sha256"],
               route=[s["edge"] for s in result.manifest["route"]], cached=result.cached,
               convert_s=time.perf_counter() - t0, manifest=str(result.out_dir / "manifest.json"))
    if result.manifest.get("prepared"):  # training recipes: what changed, and the source-vs-changed comparison
        row["prepared"] = result.manifest["prepared"]
    return row, result


def run(source, dataset, targets: list[Target], out_root: Path = Path("out"), bench: BenchOptions = BenchOptions(),
        devices: list[str] = ("local",), progress=None, device_wait: float = 0.0) -> list[dict]:
    """Convert every target, then on each device check parity and benchmark each artifact in one
    persistent runner session (one connection per device per run, the device leased meanwhile).
    Returns (and the caller writes) one record per (target, device), plus one for the source."""
    progress = progress or (lambda msg: None)
    base, src_row, ref_out, ref_bench = reference_phase(source, dataset, bench, progress)
    converted = []
    for target in targets:
        progress(f"{target.name}: converting")
        converted.append(convert_one(source, target, dataset, out_root, base))
    records = [src_row]
    for name in devices:
        records += measure_phase(name, converted, dataset, ref_out, ref_bench, bench, progress, device_wait)
    _blame_layers(records, source, targets, dataset, out_root, progress)
    return records


def _blame_layers(records: list[dict], source, targets: list[Target], dataset, out_root: Path, progress) -> None:
    """An int8 target that failed parity names the layer where it loses most (a quick diagnosis)."""
    from .diagnose import blame

    said: dict[str, str] = {}
    for r in records:
        if r.get("status") != "parity_failed":
            continue
        name = r["target"]
        if name not in said:
            target = next((t for t in targets if t.name == name), None)
            if target is not None and target.recipe_spec.kind in ("int8-static", "int8-dynamic"):
                progress(f"{name}: parity failed; finding the layer int8 loses most at")
            said[name] = blame(source, target, dataset, out_root) if target is not None else ""
        if said[name]:
            r["reason"] = f"{r.get('reason', '')}; {said[name]}".lstrip("; ")


def measure_phase(name, converted, dataset, ref_out, ref_bench, bench, progress, device_wait, emit=None,
                  skip=None) -> list[dict]:
    """Parity and bench of every converted artifact on device ``name``: one lease, one connection,
    one persistent runner worker (restarted only after a crash)."""
    from ..devices.inventory import get_spec, open_device
    from ..devices.lease import lease

    spec = get_spec(name)
    rows = []
    progress = progress or (lambda msg: None)
    emit = emit or (lambda row: None)
    skip = skip or (lambda row: False)  # a resumed sweep: already measured
    todo = [(t, dict(r), res) for t, r, res in converted]
    try:
        with lease(name, device_wait), open_device(spec) as device:
            session, probe = None, None
            try:
                for target, row, result in todo:
                    if skip(dict(row, device={"name": name})):  # asked per row: a sweep can stop in between
                        rows.append(None)
                        continue
                    row["device"] = {"name": name, "kind": spec.kind, "emulated": device.emulated,
                                     "labels": dict(spec.labels)}
                    foreign = target.foreign_to(device)
                    if foreign:
                        row.update(status="run_failed", reason=f"{foreign}: not run there")
                        rows.append(row)
                        emit(row)
                        continue
                    if isinstance(result, OnDevice):
                        progress(f"{target.name}: converting on {name}")
                        row, result = result.run(target, row, device)
                    if result is None:
                        rows.append(row)
                        emit(row)
                        continue
                    unrunnable = cannot_run_on(target, device)
                    if unrunnable:  # validated at conversion; parity waits for a device the runtime runs on
                        row.update(unrunnable, **validation_fields(result))
                        rows.append(row)
                        emit(row)
                        continue
                    progress(f"{target.name} on {name}: parity and benchmark")
                    try:
                        if session is None:  # (re)start the persistent worker: one per device, or after a crash
                            session = RunnerSession(device, runtimes=sorted({t.runtime for t, _, _ in todo}))
                            probe = session.env()
                        row["device"] = device_record(device, probe)
                        m = measure_in(session, result.artifact, target.runtime, dataset, ref_out, target.tolerance,
                                       bench)
                    except RunnerError as e:
                        row.update(status="run_failed", reason=str(e))
                        rows.append(row)
                        emit(row)
                        if session is not None:
                            session.close()
                        session = None
                        continue
                    row.update(m)
                    p = m["parity"]
                    row["status"] = "ok" if p["passed"] else "parity_failed"
                    if not p["passed"]:
                        row["reason"] = "; ".join(p["failures"])
                    if name == "local" and ref_bench["p50_ms"] and m["bench"]["p50_ms"]:
                        row["speedup_vs_source"] = ref_bench["p50_ms"] / m["bench"]["p50_ms"]
                        row["speedup_noisy"] = bool(ref_bench.get("noisy") or m["bench"].get("noisy"))
                    rows.append(row)
                    emit(row)
            finally:  # also on Ctrl-C or a failure: the worker never outlives the run
                if session is not None:
                    session.close()
    except EdgekitError as e:  # the device itself failed: every pending row says so, the run goes on
        done = {r["target"] for r in rows if r}
        for target, row, _ in todo[len(rows):]:
            if target.name not in done:
                row.update(status="run_failed", reason=str(e),
                           device={"name": name, "kind": spec.kind, "emulated": spec.emulated})
                rows.append(row)
                emit(row)
    return [r for r in rows if r is not None]


def cannot_run_on(target: Target, device) -> dict | None:
    """The record fields of a target whose runtime cannot run on ``device``'s OS at all (its
    ``predicts_on``): status ``needs_device``, the one sentence that says why, a parity that never passed
    and names the device it needs. None when it can run there."""
    from ..backends import get_runtime

    rt = get_runtime(target.runtime)
    if not rt.predicts_on:
        return None
    info = device.describe()
    if rt.predicts(info.os):
        return None
    return {"status": "needs_device", "reason": rt.only_on_text(info.os, info.arch),
            "parity": {"passed": False, "needs": rt.needs_text(), "failures": [f"needs {rt.needs_text()}"]}}


def validation_fields(result) -> dict:
    """What the conversion's validation found (the proof that stands in where the runtime cannot run)."""
    proof = (result.manifest or {}).get("proof") or {}
    return {"validation": proof["validation"]} if proof.get("validation") else {}


def save_records(records: list[dict], out_root: Path) -> dict:
    """Append the records to ``<out>/<model>/results.jsonl`` and write this run's reports
    (Markdown, HTML with plots, CSV) beside it. Returns the paths by kind."""
    from .artifacts import append_jsonl
    from ..reports.tables import write_reports

    folder = Path(out_root) / records[0]["model"]
    jsonl = folder / "results.jsonl"
    append_jsonl(jsonl, records)
    paths = {"records": jsonl}
    paths.update(write_reports(records, folder, f"edgekit report: {records[0]['model']}"))
    return paths


def runtime_for(artifact: Path) -> str:
    """The runtime that runs ``artifact``: its manifest's, else the one for the format it is."""
    from ..backends import format_of_path, runtime_for_format, runtimes

    target = manifest_target(artifact)
    if target is not None:
        return target.runtime
    fmt = format_of_path(Path(artifact))
    rt = runtime_for_format(fmt.name) if fmt else None
    if rt is None:
        from .errors import UserError

        runnable = sorted({s for r in runtimes().values() for f in r.formats for s in _suffixes(f)})
        raise UserError(f"'{artifact}' is not an artifact edgekit can run (one of: {', '.join(runnable)}).")
    return rt.name


def _suffixes(fmt: str) -> tuple:
    from ..backends import get_format

    f = get_format(fmt)
    return f.suffixes or ((f"a folder with {f.folder_marker}",) if f.folder_marker else ())


def manifest_target(artifact: Path) -> Target | None:
    """The target recorded in the manifest beside an artifact, if any: ``T@RECIPES`` with its training
    recipes; ``T@CHOICES`` (calibration choices) as its base target ``T`` (the same runtime and tolerance)."""
    from .errors import EdgekitError
    from .specs import all_targets, get_target

    m = Path(artifact).parent / "manifest.json"
    if m.exists():
        name = json.loads(m.read_text()).get("target") or ""
        try:
            return get_target(name)
        except EdgekitError:
            return all_targets().get(name.partition("@")[0])
    return None


__all__ = ["BenchOptions", "measure", "run", "save_records", "asdict"]
