"""One typed record: what `edgekit run` writes per (target, device), one line of results.jsonl.

The pipeline produces plain dicts; every reader (tables, HTML, CSV, MLflow, the gate, fit, the
sweep's resume check) takes them through :meth:`Record.from_json` and reads the figures it needs
from here, so "worst cosine", "status text" or "p50" mean the same thing everywhere.

``Record.from_json(d).to_json() == d`` for any JSON object: keys this module does not know (in
the record or in its parity, bench, device, …) are kept in ``extra`` and written back in their
original order, and a key present as ``null`` stays ``null``. Old results files load as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

from .fmt import calibration_text, delta_text, key_text, max_err_text, metric_text, num, size_text, speedup_text
from .jsonobject import JsonObject, json_field

# The one status vocabulary people read: the console, Markdown, HTML, CSV (``status_text``),
# MLflow (the ``status_text`` tag), the gate and fit. Machine-readable places keep the raw key.
STATUS_TEXT = {"ok": "converted", "reference": "reference", "parity_failed": "PARITY FAILED",
               "conversion_failed": "conversion failed", "run_failed": "run failed",
               "measured": "measured (no parity check)",  # a test harness record with a benchmark only
               # converted and validated where its runtime cannot run: parity waits for a device it runs on
               "needs_device": "validated, not run"}
NOISY_MARK = "⚠"  # beside a figure that rests on a noisy timing (the legend says so)
FAILED = ("parity_failed", "conversion_failed", "run_failed")


def status_text(status) -> str:
    """The text of a raw status key (an unknown key as it is, a missing one as "?")."""
    return STATUS_TEXT.get(status, "?" if status is None else str(status))


@dataclass(frozen=True, kw_only=True)
class OutputParity(JsonObject):
    """One output compared with the source's."""
    name: str | None = json_field()
    cosine_mean: float | None = json_field()
    cosine_min: float | None = json_field()
    max_abs: float | None = json_field()
    mean_abs: float | None = json_field()
    rel_l2: float | None = json_field()
    top1_agreement: float | None = json_field()
    top5_agreement: float | None = json_field()
    ref_max_abs: float | None = json_field()  # the source output's largest |value| (its scale)

    @property
    def rel_max_abs(self) -> float | None:
        """max_abs as a fraction of the source output's largest |value| (None when not recorded)."""
        err, scale = num(self.max_abs), num(self.ref_max_abs)
        if err is None or scale is None:
            return None
        return err / scale if scale > 0 else (0.0 if err == 0 else None)


@dataclass(frozen=True, kw_only=True)
class Parity(JsonObject):
    outputs: tuple[OutputParity, ...] | None = json_field((tuple, OutputParity))
    worst_output: str | None = json_field()  # the name of the output with the lowest mean cosine
    n: int | None = json_field()
    passed: bool | None = json_field()
    failures: tuple[str, ...] | None = json_field(tuple)
    task_metric: str | None = json_field()
    task_value: float | None = json_field()
    task_source: float | None = json_field()
    task_delta_points: float | None = json_field()
    synthetic: bool | None = json_field()
    needs: str | None = json_field()  # not checked: the device it needs ("a macOS device")

    @property
    def worst(self) -> OutputParity | None:
        """The output that differs most from the source: the one named ``worst_output``, else
        (older or hand-made records) the one with the lowest mean cosine."""
        outs = self.outputs or ()
        named = [o for o in outs if self.worst_output is not None and o.name == self.worst_output]
        if named:
            return named[0]
        if not outs:
            return None
        return min(outs, key=lambda o: num(o.cosine_mean) if num(o.cosine_mean) is not None else 2.0)


@dataclass(frozen=True, kw_only=True)
class Bench(JsonObject):
    n: int | None = json_field()
    p50_ms: float | None = json_field()
    p90_ms: float | None = json_field()
    p99_ms: float | None = json_field()
    mean_ms: float | None = json_field()
    std_ms: float | None = json_field()
    min_ms: float | None = json_field()
    max_ms: float | None = json_field()
    median_ci95_ms: tuple[float, float] | None = json_field(tuple)
    noisy: bool | None = json_field()
    noisy_why: tuple[str, ...] | None = json_field(tuple)  # the rules of core.stats the timings broke
    first_ms: float | None = json_field()
    warmup: int | None = json_field()
    threads: int | None = json_field()
    batch: int | None = json_field()
    peak_rss_mb: float | None = json_field()
    runner_base_rss_mb: float | None = json_field()
    load_ms: float | None = json_field()
    # the runtime's own timer on the same loaded model ({"name", "p50_ms", "n", ...}), beside edgekit's loop
    runtime_timer: dict | None = json_field()

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The 95% confidence interval of the median, ms; (p50, p50) when not recorded."""
        ci = self.median_ci95_ms
        if ci and len(ci) == 2 and num(ci[0]) is not None and num(ci[1]) is not None:
            return float(ci[0]), float(ci[1])
        p50 = num(self.p50_ms)
        return None if p50 is None else (p50, p50)


@dataclass(frozen=True, kw_only=True)
class DeviceRef(JsonObject):
    name: str | None = json_field()
    kind: str | None = json_field()
    emulated: bool | None = json_field()
    labels: dict | None = json_field()
    probe: dict | None = json_field()  # what the runner reported of the machine (os, cpu, runtimes, …)


@dataclass(frozen=True, kw_only=True)
class DataInfo(JsonObject):
    name: str | None = json_field()
    calibration_samples: int | None = json_field()
    evaluation_samples: int | None = json_field()
    synthetic: bool | None = json_field()
    notes: tuple[str, ...] | None = json_field(tuple)
    split: str | None = json_field()  # how calibration and evaluation samples were told apart
    shared_samples: int | None = json_field()  # evaluation samples also found in calibration (content check)
    calibration_used: int | None = json_field()  # a target's: what its recipe took (0: none)
    calibration_cap: int | None = json_field()  # a target's: its recipe's cap (recipe.calibration.samples)

    @property
    def calibration_text(self) -> str:
        """"200 of 300 calibration samples (the recipe's cap)", or "300 calibration samples"."""
        return calibration_text(self.calibration_used, self.calibration_samples, self.calibration_cap)


@dataclass(frozen=True, kw_only=True)
class SourceTask(JsonObject):
    """The source row's own task metric on the held-out data."""
    metric: str | None = json_field()
    value: float | None = json_field()


@dataclass(frozen=True, kw_only=True, repr=False)
class Record(JsonObject):
    """One (target, device) result, or the source's own row (``status == "reference"``)."""
    run_id: str | None = json_field()
    edgekit: str | None = json_field()
    sweep: str | None = json_field()
    model: str | None = json_field()
    source: str | None = json_field()  # the source model's spec
    source_sha256: str | None = json_field()
    data: DataInfo | None = json_field(DataInfo)
    target: str | None = json_field()
    label: str | None = json_field()  # the source row: how the source ran ("torch eager fp32")
    status: str | None = json_field()  # ok | reference | parity_failed | conversion_failed | run_failed | measured
    reason: str | None = json_field()
    format: str | None = json_field()
    recipe: str | None = json_field()
    runtime: str | None = json_field()
    runtime_version: str | None = json_field()
    artifact: str | None = json_field()
    artifact_sha256: str | None = json_field()
    manifest: str | None = json_field()
    route: tuple[str, ...] | None = json_field(tuple)
    cached: bool | None = json_field()
    convert_s: float | None = json_field()
    load_s: float | None = json_field()
    size_bytes: int | None = json_field()
    speedup_vs_source: float | None = json_field()
    speedup_noisy: bool | None = json_field()  # the speed-up was computed from a noisy timing (source or target)
    task: SourceTask | None = json_field(SourceTask)
    parity: Parity | None = json_field(Parity)
    bench: Bench | None = json_field(Bench)
    device: DeviceRef | None = json_field(DeviceRef)

    def __repr__(self) -> str:
        return f"Record({self.model}/{self.name}@{self.device_label} {self.status!r} run {self.run_id})"

    @classmethod
    def coerce(cls, r) -> Record:
        """``r`` as a Record: a Record as it is, a dict through :meth:`from_json`."""
        return r if isinstance(r, Record) else cls.from_json(r)

    # --- what it is ------------------------------------------------------------------------

    @property
    def is_source(self) -> bool:
        return self.status == "reference" or self.target == "source"

    @property
    def ok(self) -> bool:
        """Converted, measured, parity passed."""
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def passed(self) -> bool:
        """Parity was checked and passed."""
        return bool(self.parity and self.parity.passed)

    @property
    def status_text(self) -> str:
        if self.status == "needs_device" and self.parity and self.parity.needs:
            return f"{status_text(self.status)}: parity needs {self.parity.needs}"
        return status_text(self.status)

    @property
    def name(self) -> str:
        """"source" for the source row, else the target's name."""
        return "source" if self.is_source else (self.target or "?")

    @property
    def key_text(self) -> str:
        """"model/target@device": how every text names a measurement."""
        return key_text(self.key)

    @property
    def model_name(self) -> str:
        return self.model or "?"

    @property
    def key(self) -> tuple[str | None, str | None, str]:
        """(model, target, device): what a later run of the same measurement shares."""
        return self.model, self.target, self.device_name or "local"

    @property
    def synthetic(self) -> bool:
        """Parity was measured on random inputs."""
        return bool((self.data and self.data.synthetic) or (self.parity and self.parity.synthetic))

    # --- device ----------------------------------------------------------------------------

    @property
    def device_name(self) -> str | None:
        return self.device.name if self.device else None

    @property
    def device_label(self) -> str:
        """The device's name for people ("-" when the record has none)."""
        return self.device_name or "-"

    @property
    def emulated(self) -> bool:
        """Measured under an emulator: timings there are not device speed."""
        return bool(self.device and self.device.emulated)

    # --- parity ----------------------------------------------------------------------------

    @property
    def worst(self) -> OutputParity | None:
        """The output that differs most from the source (see :attr:`Parity.worst`)."""
        return self.parity.worst if self.parity else None

    @property
    def worst_cosine(self) -> float | None:
        return num(self.worst.cosine_mean) if self.worst else None

    @property
    def worst_max_abs(self) -> float | None:
        return num(self.worst.max_abs) if self.worst else None

    @property
    def worst_rel_err(self) -> float | None:
        """The worst output's max abs error as a fraction of that output's largest source |value|."""
        return self.worst.rel_max_abs if self.worst else None

    @property
    def max_err_text(self) -> str:
        """"0.61%" of the source output's scale; the bare abs error where the scale was not recorded."""
        return max_err_text(self.worst_rel_err, self.worst_max_abs)

    @property
    def task_metric(self) -> str | None:
        if self.is_source:
            return self.task.metric if self.task else None
        return self.parity.task_metric if self.parity else None

    @property
    def task_value(self) -> float | None:
        """The task metric on the held-out data (the source row: the source's own)."""
        if self.is_source:
            return num(self.task.value) if self.task else None
        return num(self.parity.task_value) if self.parity else None

    @property
    def task_delta(self) -> float | None:
        """The task metric's change against the source, in points (None for the source row)."""
        if self.is_source or not self.parity:
            return None
        return num(self.parity.task_delta_points)

    @property
    def task_text(self) -> str:
        """"98.44% (-0.22)": the value and its change in points; "-" when there is none."""
        if self.task_value is None:
            return "-"
        text = metric_text(self.task_metric, self.task_value)
        return text + (f" ({delta_text(self.task_delta)})" if self.task_delta is not None else "")

    # --- latency and size ------------------------------------------------------------------

    @property
    def timed(self) -> bool:
        """A latency was measured (a bench with a numeric p50)."""
        return self.p50_ms is not None

    @property
    def p50_ms(self) -> float | None:
        return num(self.bench.p50_ms) if self.bench else None

    @property
    def p90_ms(self) -> float | None:
        return num(self.bench.p90_ms) if self.bench else None

    @property
    def p99_ms(self) -> float | None:
        return num(self.bench.p99_ms) if self.bench else None

    def bench_value(self, q: str) -> float | None:
        """A bench figure by name ("min_ms", "p50_ms", …, "peak_rss_mb") as a number, or None."""
        return num(getattr(self.bench, q, None)) if self.bench else None

    @property
    def noisy(self) -> bool:
        """The machine was noisy while benchmarking."""
        return bool(self.bench and self.bench.noisy)

    @property
    def noisy_why(self) -> tuple[str, ...]:
        """Why the timings count as noisy (records from before edgekit said why: the rules then)."""
        if not self.noisy:
            return ()
        return tuple(self.bench.noisy_why or ()) or ("the CI of the median or the tail (p90 > 2x p50) was too wide",)

    @property
    def speedup(self) -> float | None:
        """Source p50 over this artifact's p50 on the same machine (1.0 for a timed source row)."""
        sp = num(self.speedup_vs_source)
        if sp:
            return sp
        return 1.0 if self.is_source and self.timed else None

    @property
    def speedup_warn(self) -> bool:
        """The speed-up rests on a noisy timing: this row's own, or the source's it was divided by."""
        return bool(self.speedup is not None and not self.is_source and (self.speedup_noisy or self.noisy))

    @property
    def speedup_text(self) -> str:
        return speedup_text(self.speedup)

    @property
    def speedup_cell(self) -> str:
        """The speed-up as the tables show it: "7.39x", or "7.39x ⚠" when it rests on a noisy timing."""
        return self.speedup_text + (" " + NOISY_MARK if self.speedup_warn else "")

    @property
    def size(self) -> int | None:
        """Size in bytes (the artifact's, or the source's weights)."""
        s = num(self.size_bytes)
        return None if s is None else int(s)

    @property
    def size_mb(self) -> float | None:
        return None if self.size is None else self.size / 2 ** 20

    @property
    def size_text(self) -> str:
        return size_text(self.size)
