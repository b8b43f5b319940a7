"""The proof that makes an artifact "converted": it loads in its runtime as a user's app would load
it (the runner, default options: the runtime's default delegates and graph optimisations), runs a
few calibration samples (never the held-out ones), and its outputs are close to the source's on
them (a loose cosine floor the target gives, ``tolerance.smoke_cosine``). A failure is the last
edge's failure: the planner tries the next route and the manifest says why.

Proofs are cached by (artifact, samples, floor): a cached conversion is not proven twice.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

from .errors import ConversionError, RunnerError

SMOKE_SAMPLES = 16


def smoke_inputs(source, data) -> tuple[dict, str]:
    """Up to SMOKE_SAMPLES calibration samples (or random inputs of the source's signature)."""
    if data is not None and data.n_calib:
        n = min(SMOKE_SAMPLES, data.n_calib)
        return {k: v[:n] for k, v in data.calib.items()}, f"{n} calibration samples of '{data.name}'"
    from .data import random_dataset

    rand = random_dataset(source.inputs, n_calib=SMOKE_SAMPLES, n_eval=1)
    return rand.calib, f"{SMOKE_SAMPLES} random inputs (no data given)"


def _key(artifact: Path, arrays: dict, floor: float, runtime: str, device) -> str:
    from .sources import file_digest

    h = hashlib.sha256(f"{file_digest(Path(artifact))}|{floor}|{runtime}|{getattr(device, 'name', '')}".encode())
    for k in sorted(arrays):
        h.update(k.encode() + arrays[k].tobytes())
    return h.hexdigest()[:24]


def prove(source, target, artifact: Path, data, edge: str, device=None) -> dict:
    """Load, run and compare; returns the proof record or raises ConversionError naming ``edge``."""
    from ..backends import get_runtime
    from .artifacts import cache_root, write_json

    rt = get_runtime(target.runtime)
    arrays, what = smoke_inputs(source, data)
    floor = target.tolerance.smoke_cosine
    foreign = target.foreign_to(device)
    if foreign:  # built for another machine: proven where it runs (parity on such a device)
        return {"proven": False, "why": f"{foreign}: the artifact was not loaded (pass --device NAME, a "
                                        f"device whose machine is {target.machine}, to prove it there)"}
    where = device.describe() if device is not None else None
    os_name, arch = (where.os, where.arch) if where is not None else (platform.system(), platform.machine())
    if not rt.predicts(os_name):  # this runtime cannot run here at all: the format's validation stands in
        return _validated(source, target, artifact, arrays, data, edge, rt, os_name, arch, device)
    if device is None and not rt.available():
        return {"proven": False, "why": f"runtime '{rt.name}' is not installed here "
                                        f"({rt.install_hint()}); the artifact was not loaded"}
    key = _key(artifact, arrays, floor, rt.name, device)
    cached = cache_root() / "proofs" / f"{key}.json"
    if cached.exists():
        proof = json.loads(cached.read_text())
    else:
        proof = _measure(source, target, artifact, arrays, what, floor, device, data)
        write_json(cached, proof)
    if not proof["proven"]:
        raise ConversionError(edge, proof["why"], proof.get("hint"))
    return proof


def _measure(source, target, artifact, arrays, what, floor, device, data) -> dict:
    from ..devices import LocalDevice
    from .parity import compare
    from .reference import reference_for
    from .session import RunnerSession
    from .specs import Tolerance

    t0 = time.perf_counter()
    stacked = data.stacked if data is not None and data.n_calib else ()
    ref = reference_for(source, LocalDevice)
    try:
        expected = ref.outputs(arrays, stacked)
    finally:
        ref.close()
    own = device is None
    device = device or LocalDevice()
    try:
        with RunnerSession(device, runtimes=[target.runtime]) as session:
            loaded = session.load(Path(artifact), target.runtime)
            got = session.infer(arrays, stacked)
    except RunnerError as e:
        return {"proven": False, "why": f"the artifact does not run in {target.runtime}: {e.message}",
                "hint": "edgekit tries the next route; 'edgekit graph' lists them."}
    finally:
        if own:
            device.close()
    try:
        p = compare(expected, got, Tolerance(min_cosine=floor))
    except ValueError as e:
        return {"proven": False, "why": f"the artifact's outputs do not match the source's: {e}"}
    cos = {o.name: round(o.cosine_mean, 6) for o in p.outputs}
    worst = min(cos, key=cos.get)
    proof = {"proven": p.passed, "runtime": target.runtime, "runtime_version": loaded.get("runtime_version"),
             "samples": what, "cosine": cos, "worst_output": worst, "min_cosine": floor,
             "load_s": round(loaded["load_s"], 4), "seconds": round(time.perf_counter() - t0, 3)}
    if not p.passed:
        proof["why"] = (f"smoke parity collapsed: output '{worst}' cosine {cos[worst]:.4f} < {floor:.4f} on "
                        f"{what}")
        proof["hint"] = "edgekit tries the next route; a gentler recipe (or keeping layers float) may help."
    return proof


def _validated(source, target, artifact, arrays, data, edge, rt, os_name: str, arch: str, device) -> dict:
    """The proof where the runtime cannot run (its ``predicts_on``): the format's ``validate`` hook checks the
    artifact against the source (input and output names, shapes and dtypes; what it holds), and the record
    says that parity needs a device the runtime runs on. A mismatch fails the edge as a failed proof does."""
    from ..backends import backend_of_format, get_format
    from .artifacts import cache_root, write_json

    why = rt.only_on_text(os_name, arch)
    fmt = get_format(target.format)
    if not fmt.validate:
        return {"proven": False, "needs": rt.needs_text(), "why": f"{why}: the artifact was not loaded"}
    key = _key(artifact, arrays, 0.0, rt.name + "|validate|" + target.name, device)
    cached = cache_root() / "proofs" / f"{key}.json"
    if cached.exists():
        proof = json.loads(cached.read_text())
    else:
        t0 = time.perf_counter()
        shapes = one_sample_shapes(source, arrays, data)
        result = backend_of_format(target.format).hook(fmt.validate)(Path(artifact), target, list(source.inputs),
                                                                      shapes)
        proof = {"proven": False, "validated": bool(result.get("passed")), "needs": rt.needs_text(),
                 "why": f"{why}; validated against the source instead, parity needs {rt.needs_text()}",
                 "validation": result, "seconds": round(time.perf_counter() - t0, 3)}
        write_json(cached, proof)
    if not proof["validated"]:
        failures = proof["validation"].get("failures") or ["it does not match the source"]
        raise ConversionError(edge, f"the artifact does not match the source: {'; '.join(failures)}",
                              "edgekit tries the next route; 'edgekit graph' lists them.")
    return proof


def one_sample_shapes(source, arrays: dict, data) -> dict:
    """{output name: its shape for one sample} from the source run on the first sample."""
    from ..devices import LocalDevice
    from .reference import reference_for

    stacked = data.stacked if data is not None and data.n_calib else ()
    ref = reference_for(source, LocalDevice)
    try:
        out = ref.outputs({k: v[:1] for k, v in arrays.items()}, stacked)
    finally:
        ref.close()
    return {name: list(a.shape[1:]) if stacked else list(a.shape) for name, a in out.items()}
