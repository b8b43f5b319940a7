"""What a test holds: an artifact bound to a device (:class:`EdgeArtifact`), the artifact loaded
there (:class:`EdgeSession`: ``run(inputs) -> outputs``, ``bench() -> LatencyStats``), and the
latency it measured (:class:`LatencyStats`, with the raw timings for confidence intervals).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import RunnerError, UserError


@dataclass(eq=False)
class EdgeArtifact:
    """An artifact (converted in this session, or a file given as it is) and the device it runs on."""

    path: Path
    runtime: str
    model: str
    slot: object  # harness.DeviceSlot
    harness: object
    target: object = None  # core.specs.Target, when known
    source: object = None  # core.sources.Source, when converted in this session
    source_spec: str | None = None
    source_sha256: str | None = None
    data: object = None  # core.data.Dataset given with it (calibration, parity, bench inputs)
    manifest: dict = field(default_factory=dict)
    role: str | None = None  # "primary" / "fallback" for a deployment bundle's artifacts
    budgets: dict = field(default_factory=dict)  # the bundle's budgets
    convert_s: float | None = None

    @property
    def target_name(self) -> str:
        return self.target.name if self.target is not None else (self.manifest.get("target") or self.path.stem)

    @property
    def device(self):
        return self.slot

    @property
    def size_bytes(self) -> int | None:
        from ..core.artifacts import size_bytes

        return size_bytes(self.path) if self.path.exists() else None

    def __repr__(self) -> str:
        role = f" {self.role}" if self.role else ""
        return f"<edge artifact{role} {self.model}/{self.target_name} on {self.slot.name}: {self.path}>"

    def describe(self) -> str:
        """"tflite-int8 on test-host (ssh)": what a message names."""
        what = [self.slot.kind] if self.slot.kind != self.slot.name else []
        what += ["EMULATED"] if self.slot.emulated else []
        role = f"{self.role} " if self.role else ""
        return f"{role}{self.target_name} on {self.slot.name}" + (f" ({', '.join(what)})" if what else "")

    def session(self, threads: int = 1) -> "EdgeSession":
        return EdgeSession(self, threads)

    def record_base(self) -> dict:
        """The fields every record of this artifact on its device starts from."""
        from .. import __version__

        m = self.manifest
        row = {"run_id": self.harness.run_id, "edgekit": __version__, "model": self.model,
               "source": self.source_spec, "source_sha256": self.source_sha256, "target": self.target_name,
               "format": m.get("format") or (self.target.format if self.target is not None else None),
               "recipe": self.target.recipe if self.target is not None else (m.get("recipe") or {}).get("name"),
               "runtime": self.runtime, "artifact_sha256": m.get("artifact_sha256"),
               "manifest": str(self.path.parent / "manifest.json") if m else None,
               "artifact": str(self.path) if self.path.exists() else None,
               "route": [s["edge"] for s in m.get("route", [])] if m else None,
               "size_bytes": self.size_bytes}
        if self.convert_s is not None:
            row["convert_s"] = self.convert_s
        return {k: v for k, v in row.items() if v is not None}


def wrap_file(path: Path, harness, slot, runtime: str | None = None) -> EdgeArtifact:
    """An artifact given as a file: its manifest (when edgekit wrote it) says what it is."""
    from ..core.pipeline import manifest_target, runtime_for

    path = Path(path)
    mpath = path.parent / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    if manifest.get("artifact") not in (None, path.name):
        manifest = {}  # a manifest of another file
    src = manifest.get("source") or {}
    # edgekit writes OUT/MODEL/TARGET/model.EXT: the model is named by the folder above the target's
    model = path.parent.parent.name if manifest else path.stem
    return EdgeArtifact(path.resolve(), runtime or runtime_for(path), model, slot, harness,
                        target=manifest_target(path) if manifest else None, source_spec=src.get("spec"),
                        source_sha256=src.get("sha256"), manifest=manifest)


def runnable_file(model) -> Path | None:
    """``model`` as a path to an artifact some runtime runs, else None."""
    from ..backends import format_of_path, runtime_for_format

    if not isinstance(model, (str, Path)) or not Path(model).exists():
        return None
    fmt = format_of_path(Path(model))
    return Path(model) if fmt is not None and runtime_for_format(fmt.name) is not None else None


@dataclass
class LatencyStats:
    """Latency of one artifact on one device (milliseconds), from ``EdgeSession.bench``."""

    summary: dict  # core.pipeline.bench_summary: n, p50_ms, p90_ms, p99_ms, mean_ms, median_ci95_ms, noisy, ...
    times_ms: np.ndarray  # every timed run, sorted
    artifact: EdgeArtifact
    runtime_version: str | None = None
    synthetic_inputs: bool = False

    def __getattr__(self, name):
        summary = self.__dict__.get("summary") or {}
        if name in summary:
            return summary[name]
        raise AttributeError(name)

    @property
    def device(self) -> str:
        return self.artifact.slot.name

    @property
    def emulated(self) -> bool:
        return self.artifact.slot.emulated

    def quantile(self, q: float) -> float:
        return float(np.percentile(self.times_ms, 100 * q))

    def ci(self, q: float) -> tuple[float, float]:
        """The 95% confidence interval of the ``q`` quantile (0.5: the median), ms."""
        from ..core.stats import quantile_ci

        return quantile_ci(self.times_ms, q)

    def __repr__(self) -> str:
        lo, hi = self.summary["median_ci95_ms"]
        return (f"<latency {self.artifact.describe()}: p50 {self.summary['p50_ms']:.4f} ms (95% CI {lo:.4f}-"
                f"{hi:.4f}), p90 {self.summary['p90_ms']:.4f} ms, n={self.summary['n']}>")


class EdgeSession:
    """An artifact loaded on its device: ``run(inputs)`` returns its outputs, ``bench()`` its latency."""

    def __init__(self, artifact: EdgeArtifact, threads: int = 1):
        self.artifact = artifact
        self.threads = threads
        self.info = self._load()

    def _load(self) -> dict:
        from .assertions import reported

        a = self.artifact
        with reported(), a.harness.hold(a.slot.name):
            return a.slot.load(a.path, a.runtime, self.threads)

    @property
    def input_specs(self) -> list:
        from ..core.signature import TensorSpec

        return [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in self.info["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return list(self.info["outputs"])

    def _arrays(self, inputs) -> tuple[dict, tuple]:
        """``inputs`` (a dict by input name, or one array for a one-input model) and the layout of each
        (samples along the model's axis 0, or stacked on a new axis: decided by rank, as for --data).
        Arrays are matched to inputs as the runner matches them (converters decorate input names)."""
        from dataclasses import replace

        from ..core.signature import DTYPES
        from ..runner.runtime_base import lookup_input

        specs = self.input_specs
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise UserError(f"the artifact has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                                "pass a dict of arrays by name.")
            inputs = {specs[0].name: inputs}
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        stacked = []
        for spec in specs:
            try:
                key = lookup_input({k: k for k in arrays}, spec.name)
            except KeyError as e:
                raise UserError(f"no array for input '{spec.name}' of {self.artifact.target_name} "
                                f"(given: {', '.join(arrays)}).", str(e.args[0])) from None
            a = arrays[key]
            # the shape decides the layout; the runner casts or quantizes the dtype (int8 inputs)
            as_given = replace(spec, dtype=str(a.dtype)) if str(a.dtype) in DTYPES else spec
            if as_given.layout(a, what="input") == "stacked":
                stacked.append(key)
        return arrays, tuple(stacked)

    def run(self, inputs) -> dict:
        """The artifact's outputs (by output name) for every sample of ``inputs``."""
        __tracebackhide__ = True
        from .assertions import reported

        a = self.artifact
        with reported():
            arrays, stacked = self._arrays(inputs)
            with a.harness.hold(a.slot.name):
                self._load()
                return a.slot.infer(arrays, stacked)

    def bench(self, inputs=None, warmup: int | None = None, min_runs: int | None = None,
              min_seconds: float | None = None, max_seconds: float | None = None) -> LatencyStats:
        """Time the artifact on its device (one sample: the first of ``inputs``, else of the artifact's
        data, else random inputs of its signature). Recorded in the session's results."""
        __tracebackhide__ = True
        from .assertions import reported

        with reported(), self.artifact.harness.hold(self.artifact.slot.name):
            return self._bench(inputs, warmup, min_runs, min_seconds, max_seconds)

    def _bench(self, inputs, warmup, min_runs, min_seconds, max_seconds) -> LatencyStats:
        from ..core.data import random_dataset
        from ..core.pipeline import bench_summary

        a = self.artifact
        synthetic = False
        if inputs is None and a.data is not None:
            arrays, stacked = self._arrays({k: v[:1] for k, v in a.data.eval.items()})
        elif inputs is None:
            arrays, stacked = self._arrays({k: v[:1] for k, v in random_dataset(self.input_specs, 1, 1).eval.items()})
            synthetic = True
        else:
            arrays, stacked = self._arrays(inputs)
            arrays = {k: v[:1] for k, v in arrays.items()}
        opts = a.harness.options.bench
        params = {"warmup": opts.warmup if warmup is None else warmup,
                  "min_runs": opts.min_runs if min_runs is None else min_runs,
                  "min_seconds": opts.min_seconds if min_seconds is None else min_seconds,
                  "max_seconds": opts.max_seconds if max_seconds is None else max_seconds}
        info = self._load()
        try:
            raw = a.slot.bench(arrays, stacked, **params)
        except RunnerError as e:
            a.harness.log.add(a, status="run_failed", reason=str(e))
            raise
        summary = bench_summary(raw, self.threads)
        summary["load_ms"] = info["load_s"] * 1000.0
        times = np.sort(np.asarray(raw["times_s"], dtype=np.float64) * 1000.0)
        stats = LatencyStats(summary, times, a, info.get("runtime_version"), synthetic)
        summary["p90_ci95_ms"] = list(stats.ci(0.9))
        summary["p99_ci95_ms"] = list(stats.ci(0.99))
        a.harness.log.add(a, bench=dict(summary), runtime_version=info.get("runtime_version"),
                          load_s=info["load_s"], bench_synthetic_inputs=synthetic or None)
        return stats
