"""The backend interface: what one target family declares, read from its ``backend.toml``.

A backend is a folder (a Python package) holding everything edgekit knows about one target
family: its formats (and how to recognise a file or folder of each), its converters (edges of the
graph, in the modules it lists), its runtimes (the file the runner loads them with, the pinned
versions a device installs, the extra that installs them here), its target and recipe files
(``targets/``, ``recipes/``), its pre-flight operator knowledge and how a source of its format
runs as the reference. Generic code asks the registry (``edgekit.backends``) and names none of it.

Hooks (loaders, references, operator listers) are written ``"module:attribute"``, the module
relative to the backend's package, and imported only when used: listing backends stays fast.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# "ints": a list of whole numbers, as a TOML list or a comma-separated string ("16,32,64"), parsed by its reader
OPTION_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "ints": (str, list)}
OS_NAMES = {"Darwin": "macOS", "Linux": "Linux", "Windows": "Windows"}  # ``uname -s`` -> its name for people
LAUNCHERS = ("python", "node", "browser")


@dataclass(frozen=True)
class FormatSpec:
    """A node of the conversion graph."""

    name: str
    description: str = ""
    suffixes: tuple[str, ...] = ()  # files of this format end so (".onnx")
    folder_marker: str = ""  # a folder holding this file is of this format ("saved_model.pb")
    callable_specs: bool = False  # "file.py:fn" / "pkg.module:fn" sources build a model of this format
    live: bool = False  # held as a Python object while converting (no file of its own)
    # an artifact of this format takes one shape per input: a source's dynamic dimensions past the batch are
    # fixed at the data's shapes before its route is walked (core/shapes.py)
    static_shapes: bool = False
    loader: str = ""  # "module:function"(spec: str, path: Path | None, input_specs) -> Source
    # live formats: "module:function"(path) -> the object, for a file an edge wrote (the next edge gets it as obj)
    opener: str = ""
    reference: str = ""  # "module:Class"(source, device_factory) -> Reference
    operators: str = ""  # "module:function"(path) -> facts for pre-flight ({"counts": {(domain, op): n}, ...})
    operator_check: str = ""  # "module:function"(domain, op, edges) -> [(status, why)] or [] (pre-flight)
    # "module:function"(path, target, inputs, outputs) -> validation dict: what stands in for the proof
    # where its runtime cannot predict (see RuntimeSpec.predicts_on); ``outputs``: {name: shape of one sample}
    validate: str = ""
    backend: str = ""

    def recognises(self, path: Path) -> bool:
        if path.is_dir():
            return bool(self.folder_marker) and (path / self.folder_marker).exists()
        return path.suffix.lower() in self.suffixes


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime the runner loads artifacts with, on this host or on a device."""

    name: str
    formats: tuple[str, ...]
    module: str  # the import that proves it is installed ("onnxruntime")
    extra: str  # pip install 'edgekit[EXTRA]' installs it here
    runner: str  # file in the backend folder, shipped to the device; defines MODEL (a runner Model class)
    description: str = ""
    launcher: str = "python"  # python | node | browser: what speaks the runner protocol
    command: tuple[str, ...] = ()  # a non-Python worker's argv ("{python}", "{runner}" filled in); () = Python's
    assets: tuple[str, ...] = ()  # more files the runner file needs beside it
    aliases: tuple[str, ...] = ()  # other names users give it (devices setup --runtime)
    pins: dict = field(default_factory=dict, hash=False)  # device arch ("*" = any) -> pip requirements
    distribution: str = ""  # its pip distribution name, whose version a device reports
    env: dict = field(default_factory=dict, hash=False)  # environment of the worker (a framework's log level)
    judge: str = ""  # "module:function"(domain, op, target, recipe) -> [(status, why)] (pre-flight)
    # "module:function"() -> bool: whether it is installed here, when importing ``module`` cannot say
    # (a runtime that is not Python); and how to install it then, when that is not the pip extra
    check: str = ""
    install: str = ""
    # "module:function"(device, progress) -> {name: version}: how `edgekit devices setup` puts a runtime
    # that pip cannot install (not Python) on an SSH device, through the device's push/run alone
    device_setup: str = ""
    title: str = ""  # its name for people ("ONNX Runtime"); default: name
    # the operating systems (``uname -s``: "Linux", "Darwin") where it can load and run an artifact at all;
    # empty = any. Elsewhere its artifacts are validated (the format's ``validate`` hook), never run.
    predicts_on: tuple[str, ...] = ()
    backend: str = ""
    root: Path | None = None

    def predicts(self, os_name: str) -> bool:
        """Whether it can run artifacts on an OS of this ``uname -s`` name."""
        return not self.predicts_on or os_name in self.predicts_on

    def needs_text(self) -> str:
        """"a macOS device": where its artifacts can be run (for a runtime limited by ``predicts_on``)."""
        names = [OS_NAMES.get(o, o) for o in self.predicts_on]
        return "a " + " or ".join(names) + " device" if names else "a device"

    def only_on_text(self, os_name: str, arch: str = "") -> str:
        """The one sentence for an OS it cannot run on: "Core ML runs only on macOS (this device is Linux x86_64)"."""
        names = " or ".join(OS_NAMES.get(o, o) for o in self.predicts_on)
        return f"{self.title or self.name} runs only on {names} (this device is {os_name}{' ' + arch if arch else ''})"

    def requirements(self, arch: str) -> list[str]:
        return list(self.pins.get(arch) or self.pins.get("*") or [])

    def runner_files(self) -> list[Path]:
        return [self.root / self.runner, *(self.root / a for a in self.assets)]

    @property
    def runner_module(self) -> str:
        return Path(self.runner).stem

    def available(self) -> bool:
        from ..core.lazy import available

        if self.check:
            from . import get_backend

            return bool(get_backend(self.backend).hook(self.check)())
        return available(self.module)

    def setup_on_device(self, device, progress=print) -> dict:
        """Put this runtime on ``device`` with its backend's ``device_setup`` hook: what it installed."""
        from . import get_backend

        return dict(get_backend(self.backend).hook(self.device_setup)(device, progress))

    def install_hint(self) -> str:
        """The command that installs it on this host."""
        return self.install or f"pip install 'edgekit[{self.extra}]'"


@dataclass(frozen=True)
class SetupStep:
    """A pip install that cannot be a plain dependency (e.g. ``--no-deps`` for stale hard pins), or
    (``run``) a step of the backend's own that is no pip install (npm packages into edgekit's cache)."""

    pip: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()  # modules it installs: a missing one names `edgekit setup BACKEND`
    why: str = ""
    # "module:function" of the backend that imports what the step installed (when a plain import of the
    # provided modules is not how edgekit imports them); default: import each provided module
    check: str = ""
    # "module:function"(progress) of the backend that does the step itself (then ``pip`` is empty)
    run: str = ""


@dataclass(frozen=True)
class DeviceKind:
    """A kind of device a backend brings (``kind`` in devices.toml): a place reached through its
    runtime's own remote protocol. ``cls`` ("module:Class") is built as ``Class.from_spec(spec)``
    (a ``devices.inventory.DeviceSpec``; its ``options`` table is the kind's to read)."""

    kind: str
    cls: str
    description: str = ""
    backend: str = ""


@dataclass(frozen=True)
class Backend:
    name: str
    root: Path
    package: str  # the Python package of the folder
    description: str = ""
    extra: str = ""  # the pip extra that installs its Python stack
    converters: tuple[str, ...] = ()  # modules (relative) that define its edges
    formats: tuple[FormatSpec, ...] = ()
    runtimes: tuple[RuntimeSpec, ...] = ()
    setup: tuple[SetupStep, ...] = ()
    options: dict = field(default_factory=dict, hash=False)  # target option name -> type name
    quiet_env: dict = field(default_factory=dict, hash=False)  # keeps its frameworks' native logs quiet
    devices: tuple[DeviceKind, ...] = ()  # device kinds it brings
    needs: tuple[str, ...] = ()  # backends whose setup steps must run before this one's (its stack builds on theirs)

    def hook(self, ref: str):
        """Import ``module:attribute`` relative to this backend's package."""
        module, _, attr = ref.partition(":")
        mod = importlib.import_module(f"{self.package}.{module}" if not module.startswith(self.package) else module)
        return getattr(mod, attr)

    def spec_dir(self, kind: str) -> Path:
        return self.root / kind

    def validate_options(self, target_name: str, options: dict) -> None:
        from ..core.errors import did_you_mean

        for key, value in options.items():
            if key not in self.options:
                hint = did_you_mean(key, self.options) or (
                    f"Options of backend '{self.name}': {', '.join(sorted(self.options)) or 'none'}.")
                raise SpecError(f"target '{target_name}': unknown option '{key}' for backend '{self.name}'.", hint)
            want = OPTION_TYPES[self.options[key]]
            ok = isinstance(value, want) and not (want in (int, float) and isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise SpecError(f"target '{target_name}': option '{key}' must be {self.options[key]}, got "
                                f"{type(value).__name__} ({value!r}).")


def _table(data: dict, known: set, where: str) -> dict:
    from ..core.errors import did_you_mean

    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{where}: unknown key '{unknown[0]}'.",
                        did_you_mean(unknown[0], known) or f"Known keys: {', '.join(sorted(known))}.")
    return data


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def load_backend(package: str, root: Path) -> Backend:
    """Read ``root/backend.toml`` (the backend of Python package ``package``)."""
    path = root / "backend.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"backend package '{package}' has no backend.toml ({path}).") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e}).") from None
    where = str(path)
    _table(data, {"name", "description", "extra", "converters", "formats", "runtimes", "setup", "options",
                  "quiet_env", "devices", "needs"}, where)
    name = data.get("name") or ""
    if not name:
        raise SpecError(f"{where}: 'name' is required.")
    fmt_keys = {f for f in FormatSpec.__dataclass_fields__ if f != "backend"}
    formats = tuple(FormatSpec(**{k: _tuple(v) for k, v in _table(f, fmt_keys, f"{where} [[formats]]").items()},
                               backend=name) for f in data.get("formats", []))
    rt_keys = {f for f in RuntimeSpec.__dataclass_fields__ if f not in ("backend", "root")}
    runtimes = []
    for r in data.get("runtimes", []):
        r = {k: _tuple(v) for k, v in _table(r, rt_keys, f"{where} [[runtimes]]").items()}
        r["pins"] = {arch: list(reqs) for arch, reqs in (r.get("pins") or {}).items()}
        if r.get("launcher", "python") not in LAUNCHERS:
            raise SpecError(f"{where}: runtime '{r.get('name')}' launcher must be one of {', '.join(LAUNCHERS)}.")
        try:
            runtimes.append(RuntimeSpec(**r, backend=name, root=root))
        except TypeError as e:
            raise SpecError(f"{where} [[runtimes]]: {e}.") from None
    steps = tuple(SetupStep(**{k: _tuple(v) for k, v in _table(s, {"pip", "provides", "why", "check", "run"},
                                                                  f"{where} [[setup]]").items()})
                  for s in data.get("setup", []))
    kinds = []
    for d in data.get("devices", []):
        d = _table(d, {"kind", "class", "description"}, f"{where} [[devices]]")
        if not d.get("kind") or not d.get("class"):
            raise SpecError(f"{where} [[devices]]: 'kind' and 'class' are required.")
        kinds.append(DeviceKind(d["kind"], d["class"], d.get("description", ""), backend=name))
    options = data.get("options", {})
    for key, tname in options.items():
        if tname not in OPTION_TYPES:
            raise SpecError(f"{where}: option '{key}' has unknown type '{tname}'.",
                            f"Use one of: {', '.join(OPTION_TYPES)}.")
    return Backend(name=name, root=root, package=package, description=data.get("description", ""),
                   extra=data.get("extra", ""), converters=tuple(data.get("converters", ())), formats=formats,
                   runtimes=tuple(runtimes), setup=steps, options=dict(options),
                   quiet_env=dict(data.get("quiet_env", {})), devices=tuple(kinds),
                   needs=tuple(data.get("needs", ())))
