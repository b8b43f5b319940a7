"""Golden files: held-out inputs and the source model's outputs on them, in a folder a user commits.

``edgekit golden record MODEL --data DATA --out FOLDER`` (or :func:`record_golden`) runs the source
model once, where its framework is installed, and writes::

    FOLDER/golden.json    what they are: source and its sha256, input specs, data layout, task, file hashes
    FOLDER/inputs.npz     the inputs, one array per model input (samples as in the data)
    FOLDER/outputs.npz    the source model's outputs on them, one array per output
    FOLDER/labels.npy     the labels, when the data has them (so accuracy is checked too)

:func:`load_golden` reads them back with numpy alone (no pickles, every file's sha256 checked), so
a CI job without the training framework can check an artifact on a device against them
(``assert_golden`` in the harness, ``edgekit golden check`` on the command line).
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.errors import DataError, SourceNotFound, UserError

MANIFEST = "golden.json"
KIND = "edgekit-golden"
VERSION = 1
DEFAULT_SAMPLES = 1000


@dataclass(frozen=True)
class Golden:
    folder: Path
    manifest: dict
    inputs: dict
    outputs: dict
    labels: np.ndarray | None = None
    stacked: tuple = ()
    task: str = "generic"
    notes: tuple = field(default_factory=tuple)

    @property
    def model(self) -> str:
        return self.manifest.get("model") or self.folder.name

    @property
    def n(self) -> int:
        return len(next(iter(self.inputs.values())))

    def describe(self) -> str:
        m = self.manifest
        return (f"{self.n} samples of '{(m.get('data') or {}).get('name', '?')}' recorded from {m.get('source')} "
                f"({m.get('reference') or 'source'}) on {m.get('created', '?')[:10]}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_golden(model: str, data: str, out, samples: int | None = None, input_specs=None, progress=None) -> Golden:
    """Run the source ``model`` on held-out samples of ``data``; write the golden folder ``out``."""
    from ..core.artifacts import atomic_dir, write_json
    from ..core.data import load_data
    from ..core.reference import reference_for
    from ..core.sources import load_source
    from ..devices import LocalDevice

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise UserError(f"'{out}' exists and is not a golden folder; it would be replaced.",
                        "Pass a new or empty folder (or one written by 'edgekit golden record').")
    if samples is not None and samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}.")
    progress = progress or (lambda msg: None)
    source = load_source(model, input_specs)
    dataset = load_data(data, source.inputs).check_against(source.inputs)
    n = min(dataset.n_eval, samples or DEFAULT_SAMPLES)
    dataset = dataset.limit(n_eval=n)
    progress(f"reference: {source.describe()} on {n} held-out samples of '{dataset.name}'")
    ref = reference_for(source, LocalDevice)
    try:
        outputs = ref.outputs(dataset.eval, dataset.stacked)
    finally:
        ref.close()
    with atomic_dir(out) as tmp:
        np.savez(tmp / "inputs.npz", **dataset.eval)
        np.savez(tmp / "outputs.npz", **outputs)
        files = ["inputs.npz", "outputs.npz"]
        if dataset.labels is not None:
            np.save(tmp / "labels.npy", np.asarray(dataset.labels))
            files.append("labels.npy")
        write_json(tmp / MANIFEST, {
            "kind": KIND, "version": VERSION, "edgekit": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": source.name, "source": source.spec, "source_sha256": source.digest, "source_format": source.format,
            "reference": getattr(ref, "label", "source"),
            "inputs": [s.to_json() for s in source.inputs], "outputs": list(outputs),
            "stacked": list(dataset.stacked),
            "data": {"name": dataset.name, "samples": n, "task": dataset.task, "synthetic": dataset.synthetic,
                     "notes": list(dataset.notes), "labels": dataset.labels is not None},
            "files": {f: _sha256(tmp / f) for f in files},
            "host": {"python": platform.python_version(), "machine": platform.machine()}})
    return load_golden(out)


def load_golden(folder) -> Golden:
    """A golden folder, every file checked against the sha256 its manifest recorded."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.exists():
        raise SourceNotFound(f"'{folder}' holds no golden files ({MANIFEST} is missing).",
                             "Record them with: edgekit golden record MODEL --data DATA --out FOLDER")
    try:
        m = json.loads(mpath.read_text())
    except ValueError as e:
        raise DataError(f"'{mpath}' is not JSON ({e}).") from None
    if not isinstance(m, dict) or m.get("kind") != KIND:
        raise DataError(f"'{mpath}' is not a golden manifest (edgekit golden record writes them).")
    if m.get("version", 0) > VERSION:
        raise DataError(f"golden files '{folder}' have version {m['version']}; this edgekit reads up to {VERSION}.",
                        "Upgrade edgekit.")
    files = m.get("files") or {}
    for name in ("inputs.npz", "outputs.npz"):
        if name not in files:
            raise DataError(f"golden manifest '{mpath}' does not list {name}.")
    for name, digest in files.items():
        path = folder / name
        if not path.exists():
            raise SourceNotFound(f"golden file '{path}' is missing.", "Restore it, or record the folder again.")
        if _sha256(path) != digest:
            raise DataError(f"golden file '{path}' was changed since it was recorded (its sha256 differs).",
                            "Restore it from version control, or record the folder again.")
    inputs, outputs = _npz(folder / "inputs.npz"), _npz(folder / "outputs.npz")
    labels = None
    if "labels.npy" in files:
        labels = np.load(folder / "labels.npy", allow_pickle=False)
    data = m.get("data") or {}
    return Golden(folder, m, inputs, outputs, labels, tuple(m.get("stacked") or ()), data.get("task") or "generic",
                  tuple(data.get("notes") or ()))


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001  a damaged file: say which
        raise DataError(f"golden file '{path}' cannot be read ({type(e).__name__}: {str(e)[:120]}).") from None


def compare_golden(golden: Golden, outputs: dict, tolerance):
    """Parity of an artifact's ``outputs`` on the golden inputs against the recorded outputs."""
    from ..core.parity import compare

    return compare(golden.outputs, outputs, tolerance, golden.labels, golden.task)
