"""The deployment bundle: the small JSON ``edgekit fit`` writes beside its records, naming the
artifact to deploy (``primary``) and, with ``--fallback``, a second one on a different runtime
that also met every budget (``fallback``: what an app loads when the primary's runtime fails on
a device). Artifact paths are relative to the bundle's folder, so the folder can be moved or
committed; each entry carries the artifact's sha256 and the figures it was chosen on.

The test harness reads bundles (``@pytest.mark.edge(bundle=...)`` checks both artifacts).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .errors import DataError, SourceNotFound

KIND = "edgekit-deployment"
VERSION = 1
ROLES = ("primary", "fallback")


@dataclass(frozen=True)
class BundleEntry:
    """One artifact of a bundle, its path resolved against the bundle's folder."""

    role: str
    target: str
    runtime: str
    artifact: Path
    artifact_sha256: str | None = None
    format: str | None = None
    recipe: str | None = None
    size_bytes: int | None = None
    measured: dict = field(default_factory=dict)

    def verify(self) -> Path:
        """The artifact's path, once it exists and still has the sha256 the fit recorded."""
        from .sources import file_digest

        if not self.artifact.exists():
            raise SourceNotFound(f"the {self.role} artifact of the deployment bundle ({self.target}) is missing: "
                                 f"'{self.artifact}'.", "Rerun 'edgekit fit', or restore the artifact.")
        if self.artifact_sha256 and file_digest(self.artifact) != self.artifact_sha256:
            raise DataError(f"the {self.role} artifact '{self.artifact}' is not the one the fit chose (its sha256 "
                            "differs).", "Rerun 'edgekit fit' to choose again, or restore the artifact.")
        return self.artifact


@dataclass(frozen=True)
class Bundle:
    path: Path
    model: str
    device: str
    budgets: dict
    primary: BundleEntry
    fallback: BundleEntry | None
    data: dict = field(default_factory=dict)

    @property
    def entries(self) -> list[BundleEntry]:
        return [e for e in (self.primary, self.fallback) if e is not None]

    def entry(self, role: str) -> BundleEntry:
        found = {e.role: e for e in self.entries}
        if role not in found:
            raise DataError(f"deployment bundle '{self.path}' has no {role} artifact.",
                            "Run 'edgekit fit ... --fallback' to choose one." if role == "fallback" else None)
        return found[role]


def _entry_json(role: str, record, folder: Path) -> dict:
    artifact = Path(record.artifact)
    try:
        rel = os.path.relpath(artifact.resolve(), folder.resolve())
    except ValueError:  # another drive
        rel = str(artifact.resolve())
    manifest = artifact.parent / "manifest.json"
    b = record.bench
    return {"role": role, "target": record.target, "format": record.format, "recipe": record.recipe,
            "runtime": record.runtime, "runtime_version": record.runtime_version, "artifact": rel,
            "artifact_sha256": record.artifact_sha256, "manifest": os.path.relpath(manifest, folder)
            if manifest.exists() else None, "size_bytes": record.size,
            "measured": {"p50_ms": record.p50_ms, "p90_ms": record.p90_ms,
                         "median_ci95_ms": list(b.ci95) if b is not None and b.ci95 else None,
                         "emulated": record.emulated, "task_metric": record.task_metric,
                         "task_value": record.task_value, "task_delta_points": record.task_delta,
                         "worst_cosine": record.worst_cosine}}


def bundle_json(primary, fallback, budgets: dict, device: str, folder: Path, fallback_wanted: bool) -> dict:
    """The bundle for ``primary`` (and ``fallback``), Records of one fit."""
    r = primary
    out = {"kind": KIND, "version": VERSION, "edgekit": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "model": r.model, "source": r.source, "source_sha256": r.source_sha256, "run_id": r.run_id,
           "device": {"name": device, "kind": r.device.kind if r.device else None, "emulated": r.emulated,
                      "arch": (r.device.probe or {}).get("arch") if r.device else None},
           "data": {"name": r.data.name, "evaluation_samples": r.data.evaluation_samples} if r.data else None,
           "budgets": {k: v for k, v in budgets.items() if v is not None},
           "primary": _entry_json("primary", primary, folder),
           "fallback": _entry_json("fallback", fallback, folder) if fallback is not None else None}
    if fallback is None and fallback_wanted:
        out["fallback_missing"] = f"no artifact on a runtime other than {r.runtime} met every budget"
    return out


def write_bundle(path: Path, primary, fallback, budgets: dict, device: str, fallback_wanted: bool = False) -> Path:
    from .artifacts import write_json

    path = Path(path)
    write_json(path, bundle_json(primary, fallback, budgets, device, path.parent, fallback_wanted))
    return path


def load_bundle(path) -> Bundle:
    """A bundle written by ``edgekit fit`` (artifacts resolved against its folder, not yet verified)."""
    path = Path(path)
    if not path.exists():
        raise SourceNotFound(f"Deployment bundle '{path}' does not exist.",
                             "Write one with: edgekit fit MODEL --data DATA --max-latency-ms MS ... --fallback")
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"Deployment bundle '{path}' is not JSON ({e}).") from None
    if not isinstance(d, dict) or d.get("kind") != KIND or not isinstance(d.get("primary"), dict):
        raise DataError(f"'{path}' is not a deployment bundle (edgekit fit writes them).")
    if d.get("version", 0) > VERSION:
        raise DataError(f"Deployment bundle '{path}' has version {d['version']}; this edgekit reads up to {VERSION}.",
                        "Upgrade edgekit.")

    def entry(role: str):
        e = d.get(role)
        if not e:
            return None
        try:
            return BundleEntry(role, e["target"], e["runtime"], (path.parent / e["artifact"]).resolve(),
                               e.get("artifact_sha256"), e.get("format"), e.get("recipe"), e.get("size_bytes"),
                               dict(e.get("measured") or {}))
        except (KeyError, TypeError):
            raise DataError(f"Deployment bundle '{path}': the {role} entry lacks its target, runtime or "
                            "artifact.") from None

    return Bundle(path, d.get("model") or "?", (d.get("device") or {}).get("name") or "local",
                  dict(d.get("budgets") or {}), entry("primary"), entry("fallback"), dict(d.get("data") or {}))
