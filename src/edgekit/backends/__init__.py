"""The registry of backends: every sub-package of this one that holds a ``backend.toml``, plus
third-party backends registered under the entry point group ``edgekit.backends`` (the entry
point names a Python package whose folder holds a ``backend.toml``)::

    [project.entry-points."edgekit.backends"]
    mynpu = "edgekit_mynpu"

Generic code (planner, pipeline, CLI, devices, reports) asks these functions and never names a
backend, a format or a runtime. Nothing heavy is imported here.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache
from pathlib import Path

from ..core.errors import SpecError, UnknownName, did_you_mean
from .base import Backend, DeviceKind, FormatSpec, RuntimeSpec, SetupStep, load_backend

ENTRY_POINT_GROUP = "edgekit.backends"

__all__ = ["Backend", "FormatSpec", "RuntimeSpec", "SetupStep", "backends", "get_backend", "formats",
           "get_format", "runtimes", "get_runtime", "runtime_for_format", "format_of_path", "load_converters",
           "spec_dirs", "setup_for_module", "quiet_env", "device_kinds", "DeviceKind"]


def _builtin() -> list[tuple[str, Path]]:
    here = Path(__file__).parent
    return [(f"{__name__}.{m.name}", here / m.name) for m in pkgutil.iter_modules([str(here)])
            if m.ispkg and (here / m.name / "backend.toml").exists()]


def _third_party() -> list[tuple[str, Path]]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            mod = importlib.import_module(ep.value.split(":")[0])
        except Exception as e:  # a broken plug-in must not take edgekit down: say which one
            raise SpecError(f"the backend '{ep.name}' (entry point {ep.value}) cannot be imported: {e}.",
                            f"Reinstall or uninstall the package that provides it.") from None
        found.append((mod.__name__, Path(mod.__file__).parent))
    return found


@lru_cache(maxsize=None)
def backends() -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for package, root in _builtin() + _third_party():
        b = load_backend(package, root)
        if b.name in out:
            raise SpecError(f"two backends are named '{b.name}' ({out[b.name].package}, {b.package}).")
        out[b.name] = b
    _check_unique(out)
    return out


def _check_unique(found: dict[str, Backend]) -> None:
    seen_f, seen_r, seen_d = {}, {}, {}
    for b in found.values():
        for d in b.devices:
            if d.kind in seen_d:
                raise SpecError(f"device kind '{d.kind}' is declared by backends '{seen_d[d.kind]}' and '{b.name}'.")
            seen_d[d.kind] = b.name
        for f in b.formats:
            if f.name in seen_f:
                raise SpecError(f"format '{f.name}' is declared by backends '{seen_f[f.name]}' and '{b.name}'.")
            seen_f[f.name] = b.name
        for r in b.runtimes:
            if r.name in seen_r:
                raise SpecError(f"runtime '{r.name}' is declared by backends '{seen_r[r.name]}' and '{b.name}'.")
            seen_r[r.name] = b.name


def get_backend(name: str) -> Backend:
    found = backends()
    if name not in found:
        raise UnknownName(f"Unknown backend '{name}'.", did_you_mean(name, found) or
                          f"Backends: {', '.join(sorted(found))}.")
    return found[name]


@lru_cache(maxsize=None)
def formats() -> dict[str, FormatSpec]:
    return {f.name: f for b in backends().values() for f in b.formats}


def get_format(name: str) -> FormatSpec:
    found = formats()
    if name not in found:
        raise UnknownName(f"Unknown format '{name}'.", did_you_mean(name, found) or
                          f"Formats: {', '.join(sorted(found))}.")
    return found[name]


def backend_of_format(name: str) -> Backend:
    return get_backend(get_format(name).backend)


@lru_cache(maxsize=None)
def runtimes() -> dict[str, RuntimeSpec]:
    return {r.name: r for b in backends().values() for r in b.runtimes}


def get_runtime(name: str) -> RuntimeSpec:
    """A runtime by its name or one of its aliases."""
    found = runtimes()
    if name in found:
        return found[name]
    for r in found.values():
        if name in r.aliases:
            return r
    names = list(found) + [a for r in found.values() for a in r.aliases]
    raise UnknownName(f"Unknown runtime '{name}'.", did_you_mean(name, names) or f"Runtimes: {', '.join(found)}.")


def runtime_for_format(fmt: str) -> RuntimeSpec | None:
    return next((r for r in runtimes().values() if fmt in r.formats), None)


def format_of_path(path: Path) -> FormatSpec | None:
    path = Path(path)
    return next((f for f in formats().values() if f.recognises(path)), None)


def callable_format() -> FormatSpec | None:
    """The format that ``file.py:fn`` / ``module:fn`` sources build, if a backend offers one."""
    return next((f for f in formats().values() if f.callable_specs), None)


def load_converters() -> None:
    """Import every backend's converter modules: their edge classes register with the graph."""
    for b in backends().values():
        for module in b.converters:
            importlib.import_module(f"{b.package}.{module}")


def spec_dirs(kind: str) -> list[Path]:
    """Folders of target/recipe files: each backend's, then ``$EDGEKIT_SPECS`` entries."""
    dirs = [b.spec_dir(kind) for b in backends().values()]
    for extra in filter(None, os.environ.get("EDGEKIT_SPECS", "").split(os.pathsep)):
        dirs.append(Path(extra) / kind)
    return [d for d in dirs if d.is_dir()]


def setup_for_module(module: str) -> Backend | None:
    """The backend whose ``edgekit setup`` installs ``module`` (one pip cannot install as a plain dependency)."""
    return next((b for b in backends().values() for s in b.setup if module in s.provides), None)


def quiet_env() -> dict:
    """Environment variables that keep the backends' frameworks from logging into the terminal."""
    out: dict = {}
    for b in backends().values():
        out.update(b.quiet_env)
    return out


def device_kinds() -> dict[str, DeviceKind]:
    """The device kinds backends bring (devices.toml ``kind``), by kind."""
    return {d.kind: d for b in backends().values() for d in b.devices}
