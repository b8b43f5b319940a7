"""``edgekit sweep suite.toml``: models x targets x recipes x devices from one file.

Phases: reference (each model's outputs and latency, here), conversions (in parallel worker
processes; cached by content hash, so a resumed sweep redoes none), measurements (one thread per
device, each device leased and served by one persistent runner worker), reports (HTML, Markdown,
CSV) and tracking (an MLflow parent run with one nested run per record). Every finished
measurement is appended to ``<out>/results.jsonl`` at once; a rerun skips what is there.
``--workers ray`` runs conversions as Ray tasks and each device as one Ray actor.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ..reports import Record
from .errors import SpecError
from .specs import from_mapping, get_recipe, get_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class SuiteModel:
    source: str
    data: str
    inputs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()  # overrides the suite's targets for this model


@dataclass(frozen=True)
class Suite:
    models: tuple[SuiteModel, ...]
    targets: tuple[str, ...]
    name: str = "sweep"
    devices: tuple[str, ...] = ("local",)
    recipes: tuple[str, ...] = ()  # recipe variants applied to targets of the same recipe kind
    out: str = "out/sweep"
    workers: int = 2
    threads: int = 1
    warmup: int = 10
    min_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 30.0
    tracking: bool = True
    tracking_uri: str = ""


def load_suite(path: Path) -> Suite:
    path = Path(path)
    if not path.exists():
        from .errors import SourceNotFound

        raise SourceNotFound(f"Suite file '{path}' does not exist.", "Check the path.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e}).") from None
    data.setdefault("name", path.stem)
    suite = from_mapping(Suite, data, path.name)
    if not suite.models:
        raise SpecError(f"{path}: no [[models]].", "Add [[models]] tables with source and data.")
    for t in suite.targets:
        get_target(t)
    for r in suite.recipes:
        get_recipe(r)
    return suite


def expand_targets(names, recipes) -> list:
    """Each target, plus a variant per listed recipe of the same kind (named ``target@recipe``), and per
    listed training recipe (core/training.py: the target with the model changed first)."""
    from .training import is_training

    out = []
    for name in names:
        t = get_target(name)
        out.append(t)
        for r in recipes:
            if is_training(get_recipe(r)):
                out.append(get_target(f"{name}@{r}"))
            elif r != t.recipe and get_recipe(r).kind == t.recipe_spec.kind:
                out.append(replace(t, name=f"{t.name}@{r}", recipe=r))
    return out


class Progress:
    """One bar per phase on stderr (a line per step when not a terminal)."""

    def __init__(self, phase: str, total: int, stream=None):
        from .terminal import terminal

        stream = stream or terminal()
        self.phase, self.total, self.done, self.stream = phase, total, 0, stream
        self.tty = stream.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {self.phase}: {what}"
        if self.tty:
            self.stream.write("\r" + text[:120].ljust(120) + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _convert_job(source_spec: str, data_spec: str, inputs: tuple, target, out_root: str, base: dict):
    """Runs in a worker process (or Ray task): load the model and data, convert one target."""
    from .data import load_data
    from .pipeline import convert_one
    from .signature import parse_input_spec
    from .sources import load_source

    source = load_source(source_spec, [parse_input_spec(s) for s in inputs] or None)
    data = load_data(data_spec, source.inputs)
    return convert_one(source, target, data, Path(out_root), base)


def _resume_key(r: Record) -> tuple:
    """What a finished measurement shares with a later attempt at it: the same source, target,
    device and artifact bytes."""
    return r.source_sha256, r.target, r.device_name, r.artifact_sha256


def _done_keys(path: Path) -> set:
    """The measurements a results file already holds (parity checked and timed), to skip on resume."""
    keys = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = Record.from_json(json.loads(line))
            except (ValueError, TypeError):
                continue  # an interrupted write: that measurement is redone
            if r.status in ("ok", "parity_failed") and r.artifact_sha256:
                keys.add(_resume_key(r))
    return keys


def run_sweep(suite: Suite, workers: str = "local") -> dict:
    from .artifacts import append_jsonl
    from .data import load_data
    from .pipeline import BenchOptions, reference_phase
    from .signature import parse_input_spec
    from .sources import load_source

    out = Path(suite.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = _done_keys(results)
    bench = BenchOptions(suite.threads, suite.warmup, suite.min_runs, suite.min_seconds, suite.max_seconds)

    # 1. references, here: outputs every target is compared with
    models = []
    bar = Progress("reference", len(suite.models))
    for m in suite.models:
        source = load_source(m.source, [parse_input_spec(s) for s in m.inputs] or None)
        data = load_data(m.data, source.inputs).check_against(source.inputs)
        base, src_row, ref_out, ref_bench = reference_phase(source, data, bench)
        base["sweep"] = suite.name
        src_row["sweep"] = suite.name
        models.append({"spec": m, "source": source, "data": data, "base": base, "src_row": src_row,
                       "ref_out": ref_out, "ref_bench": ref_bench,
                       "targets": expand_targets(m.targets or suite.targets, suite.recipes)})
        bar.step(source.name)

    # 2. conversions, in parallel processes (or Ray tasks)
    jobs = [(i, t) for i, m in enumerate(models) for t in m["targets"]]
    converted = {i: [] for i in range(len(models))}
    bar = Progress("convert", len(jobs))
    args = [(models[i]["spec"].source, models[i]["spec"].data, models[i]["spec"].inputs, t, str(out),
             models[i]["base"]) for i, t in jobs]
    for (i, t), result in zip(jobs, _map_convert(args, workers, suite.workers)):
        converted[i].append(result)
        bar.step(f"{models[i]['source'].name}/{t.name}" + (" (failed)" if result[2] is None else ""))

    # 3. measurements: one thread (or Ray actor) per device, each device leased for its whole turn
    records = [m["src_row"] for m in models]
    append_jsonl(results, records)
    n_meas = sum(len(v) for v in converted.values()) * len(suite.devices)
    bar = Progress("measure", n_meas)

    stop = threading.Event()  # set on Ctrl-C: each device finishes its current measurement, then stops

    def emit(row):
        append_jsonl(results, [row])
        records.append(row)
        r = Record.from_json(row)
        bar.step(f"{r.model}/{r.target}@{r.device_label} {r.status_text}")

    def skip(row):
        if stop.is_set():
            raise _Stopped()
        r = Record.from_json(row)
        if _resume_key(r) in done:
            bar.step(f"{r.model}/{r.target}@{r.device_label} (done before)")
            return True
        return False

    _measure_all(suite, models, converted, bench, emit, skip, workers, stop)

    # 4. reports from every record of this sweep's file (resumed runs included)
    from ..reports import latest_records, load_records, write_reports

    every = list(latest_records(load_records(results)).values())
    reports = write_reports(every, out, f"edgekit sweep: {suite.name}")
    tracking = None
    if suite.tracking:
        tracking = _track(every, suite, reports)
    return {"records": every, "results": str(results), "reports": {k: str(v) for k, v in reports.items()},
            "tracking": tracking}


def _map_convert(args, workers: str, n: int):
    if workers == "ray":
        from .remote import ensure_ray

        ray = ensure_ray()  # RAY_ADDRESS joins an existing cluster; otherwise a local instance, on loopback
        task = ray.remote(_convert_job)
        return ray.get([task.remote(*a) for a in args])
    if n <= 1:
        return [_convert_job(*a) for a in args]
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    try:
        return list(pool.map(_convert_job, *zip(*args)))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def _measure_device(name, models, converted, bench, emit, skip, wait):
    from .pipeline import measure_phase

    rows = []
    for i, m in enumerate(models):
        rows += measure_phase(name, converted[i], m["data"], m["ref_out"], m["ref_bench"], bench, None, wait,
                              emit=emit, skip=skip)
    return rows


def _measure_all(suite, models, converted, bench, emit, skip, workers, stop):
    wait = 3600.0  # a sweep queues behind other users of a device instead of failing
    if workers == "ray":
        import ray

        @ray.remote
        class DeviceActor:  # one actor per device: a device is never shared
            def __init__(self, name):
                self.name = name

            def measure(self, models, converted, bench):
                rows = []
                _measure_device(self.name, models, converted, bench, rows.append, lambda r: False, wait)
                return rows

        slim = [{k: m[k] for k in ("data", "ref_out", "ref_bench")} for m in models]
        actors = {d: DeviceActor.remote(d) for d in suite.devices}
        for rows in ray.get([a.measure.remote(slim, converted, bench) for a in actors.values()]):
            for row in rows:
                if not skip(row):
                    emit(row)
        return
    pool = ThreadPoolExecutor(max_workers=max(1, len(suite.devices)))
    futures = [pool.submit(_measure_device, d, models, converted, bench, emit, skip, wait) for d in suite.devices]
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.2)  # the main thread stays free to take Ctrl-C
        for f in futures:
            try:
                f.result()
            except _Stopped:
                pass
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


class _Stopped(Exception):
    """The sweep was interrupted: a device thread stops before its next measurement."""


def _track(records, suite, reports):
    import warnings

    try:
        from ..reports import log_records

        return log_records(records, tracking_uri=suite.tracking_uri or None, parent_name=suite.name,
                           artifacts=[Path(p) for p in reports.values()])
    except Exception as e:  # tracking never fails a sweep
        warnings.warn(f"experiment tracking failed: {e}")
        return None

