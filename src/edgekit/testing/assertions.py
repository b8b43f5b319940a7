"""The harness's assertions: parity against the source model, parity against golden files, and
latency budgets. Each measures on the artifact's device, records what it measured (see
``records``), and on failure says what was measured, how sure the figure is, and the budget.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..core.errors import EdgekitError, RunnerError, UserError

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


@contextmanager
def reported():
    """An edgekit error inside a check fails the test with its one-line message (no traceback
    through edgekit); outside pytest it is raised as it is."""
    __tracebackhide__ = True
    try:
        yield
    except EdgekitError as e:
        try:
            import pytest
        except ImportError:  # pragma: no cover - used without pytest
            raise e from None
        pytest.fail(f"edgekit: {e.one_line()}", pytrace=False)


def as_artifact(artifact, device: str | None = None):
    """An EdgeArtifact as it is; a path to an artifact file wrapped on ``device`` (default: local)."""
    from .artifact import EdgeArtifact, runnable_file, wrap_file
    from .harness import active

    if isinstance(artifact, EdgeArtifact):
        return artifact
    path = runnable_file(artifact)
    if path is None:
        raise UserError(f"'{artifact}' is not an artifact to check: pass what edge_artifact(...) returned, or "
                        "the path of an artifact file edgekit can run.")
    h = active()
    return wrap_file(path, h, h.slot(device or "local"))


def _tolerance(tolerance, artifact):
    from ..core.specs import Tolerance

    from dataclasses import fields, replace

    base = artifact.target.tolerance if artifact.target is not None else Tolerance()
    if tolerance is None:
        return base
    if isinstance(tolerance, Tolerance):
        return tolerance
    if isinstance(tolerance, (int, float)):
        return replace(base, min_cosine=float(tolerance))
    if isinstance(tolerance, dict):  # the target's tolerance with these fields changed
        unknown = set(tolerance) - {f.name for f in fields(Tolerance)}
        if unknown:
            raise UserError(f"tolerance has no field {', '.join(sorted(unknown))} (it has "
                            f"{', '.join(f.name for f in fields(Tolerance))}).")
        return replace(base, **tolerance)
    raise UserError(f"tolerance must be a Tolerance, a dict of fields to change, or a minimum cosine, not "
                    f"{tolerance!r}.")


def _outputs(art, arrays: dict, stacked) -> tuple[dict, dict]:
    """Run ``arrays`` through the artifact on its device; a runner failure is recorded, then raised."""
    h = art.harness
    with h.hold(art.slot.name):
        try:
            info = art.slot.load(art.path, art.runtime)
            return art.slot.infer(arrays, stacked), info
        except RunnerError as e:
            h.log.add(art, status="run_failed", reason=str(e))
            raise


def _data_info(ds) -> dict:
    return {"name": ds.name, "calibration_samples": ds.n_calib, "evaluation_samples": ds.n_eval,
            "synthetic": ds.synthetic, "notes": list(ds.notes)}


def _measured_text(res) -> str:
    parts = []
    for o in res.outputs:
        t = f"{o.name} cosine {o.cosine_mean:.5f} (min {o.cosine_min:.5f}), max abs {o.max_abs:.3g}"
        if o.top1_agreement is not None:
            t += f", top-1 agreement {o.top1_agreement:.4f}"
        parts.append(t)
    if res.task_value is not None:
        parts.append(f"{res.task_metric} {100 * res.task_value:.2f}% (reference {100 * res.task_source:.2f}%, "
                     f"{res.task_delta_points:+.2f} points)")
    return "; ".join(parts)


def _tolerance_text(tol) -> str:
    bits = [f"min cosine {tol.min_cosine}"]
    if tol.max_abs is not None:
        bits.append(f"max abs {tol.max_abs:g}")
    if tol.min_top1_agreement is not None:
        bits.append(f"min top-1 agreement {tol.min_top1_agreement}")
    if tol.max_task_drop is not None:
        bits.append(f"max task drop {tol.max_task_drop} points")
    return ", ".join(bits)


def _parity_message(art, against: str, res, tol, given: bool) -> str:
    whose = "" if given else (f" (target {art.target_name}'s)" if art.target is not None else " (the default)")
    return (f"parity FAILED: {art.describe()} against {against}, {res.n} samples\n"
            f"  failed:    {'; '.join(res.failures)}\n"
            f"  measured:  {_measured_text(res)}\n"
            f"  tolerance: {_tolerance_text(tol)}{whose}")


def assert_parity(artifact, reference=None, data=None, tolerance=None, device: str | None = None):
    """The artifact's outputs on the device against the reference model's on the held-out part of
    ``data``. ``reference``: the source model (a spec like ``file.py:build``, default: the artifact's
    own source), or its outputs (a dict of arrays); ``data``: a data spec or Dataset (default: the
    artifact's); ``tolerance``: a Tolerance, a dict of the fields to change in the target's, or a
    minimum cosine (default: the target's). Returns the ParityResult; raises AssertionError saying what failed."""
    __tracebackhide__ = True
    from ..core.parity import compare

    with reported():
        art = as_artifact(artifact, device)
        h = art.harness
        source, given = None, None
        if isinstance(reference, dict):
            given = reference
        else:
            spec = reference if reference is not None else (art.source or art.source_spec)
            if spec is None:
                raise UserError(f"assert_parity needs the reference model for {art.path.name} (its manifest names "
                                "no source): pass reference='file.py:build' (or its outputs).")
            source = h.source(spec)
        if data is None and art.data is None:
            raise UserError("assert_parity needs data: pass data='digits' (a data spec) or a Dataset.")
        dataset = h.dataset(data, source) if data is not None else art.data
        if given is not None:
            ref_out, label = given, "the given outputs"
        else:
            ref_out, label = h.reference(source, dataset)
        tol = _tolerance(tolerance, art)
        outputs, info = _outputs(art, dataset.eval, dataset.stacked)
        res = compare(ref_out, outputs, tol, dataset.labels, dataset.task, dataset.synthetic)
        h.log.add(art, parity=res.to_json(), data=_data_info(dataset), runtime_version=info.get("runtime_version"),
                  source=source.spec if source is not None else None,
                  source_sha256=source.digest if source is not None else None)
    if not res.passed:
        against = (f"{source.spec} ({label})" if source is not None else label) + f" on '{dataset.name}'"
        raise AssertionError(_parity_message(art, against, res, tol, tolerance is not None))
    return res


def assert_golden(artifact, folder, tolerance=None, device: str | None = None):
    """The artifact's outputs on the device against golden files (``edgekit golden record``): the
    recorded inputs run on the device, compared with the recorded outputs (and labels). Needs
    numpy and the device, never the training framework. Returns the ParityResult."""
    __tracebackhide__ = True
    from .golden import compare_golden, load_golden

    with reported():
        golden = load_golden(folder)
        art = as_artifact(artifact, device)
        tol = _tolerance(tolerance, art)
        outputs, info = _outputs(art, golden.inputs, golden.stacked)
        res = compare_golden(golden, outputs, tol)
        m = golden.manifest
        data = m.get("data") or {}
        art.harness.log.add(
            art, parity=res.to_json(), runtime_version=info.get("runtime_version"),
            source=art.source_spec or m.get("source"), source_sha256=art.source_sha256 or m.get("source_sha256"),
            data={"name": data.get("name"), "evaluation_samples": golden.n, "synthetic": bool(data.get("synthetic")),
                  "notes": [f"golden files {Path(folder)} ({golden.describe()})"]},
            golden={"folder": str(Path(folder).resolve()), "source": m.get("source"), "recorded": m.get("created"),
                    "samples": golden.n})
    if not res.passed:
        raise AssertionError(_parity_message(art, f"golden files {folder} ({golden.describe()})", res, tol,
                                             tolerance is not None))
    return res


def _skip(reason: str):
    try:
        import pytest
    except ImportError:  # pragma: no cover
        return
    pytest.skip(reason)


def assert_latency(stats, p50_ms: float | None = None, p90_ms: float | None = None, p99_ms: float | None = None,
                   allow_emulated: bool = False) -> dict:
    """Latency budgets (milliseconds, each a percentile of the timed runs) for ``stats`` from
    ``EdgeSession.bench()``. An emulated device's timings are no measure of the board's speed: the
    check is skipped there unless ``allow_emulated``. Returns {budget: what was checked}."""
    __tracebackhide__ = True
    limits = {k: v for k, v in (("p50", p50_ms), ("p90", p90_ms), ("p99", p99_ms)) if v is not None}
    if not limits:
        raise TypeError("assert_latency needs a budget: p50_ms=, p90_ms= or p99_ms=")
    art = stats.artifact
    checked = {}
    for name, limit in limits.items():
        q = QUANTILES[name]
        lo, hi = stats.ci(q)
        measured = stats.summary[f"{name}_ms"]
        checked[f"{name}_ms"] = {"limit": float(limit), "measured": measured, "ci95": [lo, hi],
                                 "passed": bool(measured <= limit)}
    emulated = stats.emulated and not allow_emulated
    if emulated:
        for c in checked.values():
            c["passed"] = None  # not checked
    art.harness.log.add(art, budgets=checked)
    if emulated:
        _skip(f"latency budget not checked on {art.slot.name}: an emulated device's timings are no measure of the "
              f"board's speed (measured {_ms(stats.summary['p90_ms'])} p90 under emulation); "
              "pass allow_emulated=True to check them anyway")
        return checked
    missed = {k: v for k, v in checked.items() if not v["passed"]}
    if missed:
        raise AssertionError(_latency_message(stats, checked))
    return checked


def _ms(v: float) -> str:
    return f"{v:.4f} ms" if v < 10 else f"{v:.1f} ms"


def _ms_range(lo: float, hi: float) -> str:
    return f"{_ms(lo)[:-3]}-{_ms(hi)}"


def _latency_message(stats, checked: dict) -> str:
    s, art = stats.summary, stats.artifact
    rt = f"{art.runtime} {stats.runtime_version}" if stats.runtime_version else art.runtime
    lines = [f"latency budget missed: {art.describe()}, {rt}, {s.get('threads', 1)} thread(s), batch "
             f"{s.get('batch', 1)}"]
    for key, c in checked.items():
        name = key[:-3]
        lo, hi = c["ci95"]
        head = f"  {name} = {_ms(c['measured'])}, 95% CI {_ms_range(lo, hi)}"
        if c["passed"]:
            lines.append(f"{head}: within the budget of {_ms(c['limit'])}")
            continue
        ratio = c["measured"] / c["limit"] if c["limit"] > 0 else float("inf")
        sure = ("the whole CI is above the budget" if lo > c["limit"] else
                "the CI reaches the budget: the miss may be noise (more runs: bench(min_runs=..., min_seconds=...))")
        lines.append(f"{head}: OVER the budget of {_ms(c['limit'])} ({ratio:.1f}x); {sure}")
    lo, hi = s["median_ci95_ms"]
    lines.append(f"  measured: n = {s['n']} timed runs after {s.get('warmup')} warm-up runs; p50 {_ms(s['p50_ms'])} "
                 f"(95% CI {_ms_range(lo, hi)}), p90 {_ms(s['p90_ms'])}, p99 {_ms(s['p99_ms'])}, first run "
                 f"{_ms(s['first_ms'])}" + ("; random inputs" if stats.synthetic_inputs else ""))
    if s.get("noisy"):
        lines.append("  the machine was noisy while timing (wide CI or a long tail): rerun on a quiet device")
    return "\n".join(lines)
