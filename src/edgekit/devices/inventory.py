"""devices.toml: named devices. Found at $EDGEKIT_DEVICES, else ./devices.toml, else the user's
config folder ($XDG_CONFIG_HOME/edgekit/devices.toml). ``local`` (this host) always exists.

    [devices.test-host]
    kind = "ssh"
    host = "127.0.0.1"
    port = 2222
    user = "edge"
    identity_file = "~/.ssh/id_ed25519"   # optional: the agent and ~/.ssh/config are used otherwise
    known_hosts = "~/.ssh/known_hosts"    # optional; host-key checking stays on unless turned off here
    python = "/usr/bin/python3"           # optional; the probe finds one otherwise
    labels = { board = "rpi4" }
    [devices.arm64-emu]
    kind = "qemu-arm64"
"""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import SpecError, UnknownName, did_you_mean
from ..core.specs import from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# each kind's device class (module, class): imported on use, so paramiko is only needed for "ssh"
DEVICE_CLASSES = {"local": ("base", "LocalDevice"), "ssh": ("ssh", "SshDevice"),
                  "qemu-arm64": ("qemu", "QemuArm64Device")}
KINDS = tuple(DEVICE_CLASSES)  # the built-in kinds; backends may bring more (``[[devices]]`` in backend.toml)


def kinds() -> tuple[str, ...]:
    from ..backends import device_kinds

    return KINDS + tuple(k for k in device_kinds() if k not in DEVICE_CLASSES)


def device_class(kind: str) -> type:
    if kind not in DEVICE_CLASSES:
        from ..backends import device_kinds, get_backend

        d = device_kinds()[kind]
        return get_backend(d.backend).hook(d.cls)
    module, cls = DEVICE_CLASSES[kind]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    kind: str
    host: str = ""
    port: int = 0  # 0: ~/.ssh/config's Port, else 22
    user: str = ""
    identity_file: str = ""
    known_hosts: str = ""
    strict_host_key_checking: bool = True
    python: str = ""
    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    remote_tmp: str = "/tmp"
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # free table read by a kind a backend brings

    def __post_init__(self):
        if self.kind not in kinds():
            raise SpecError(f"device '{self.name}': unknown kind '{self.kind}'.", f"Use one of: {', '.join(kinds())}.")
        if self.options and self.kind in DEVICE_CLASSES:
            raise SpecError(f"device '{self.name}': kind '{self.kind}' takes no options table.")
        if self.kind not in DEVICE_CLASSES and hasattr(device_class(self.kind), "check_spec"):
            device_class(self.kind).check_spec(self)  # a kind a backend brings checks its own fields
        if self.kind == "ssh" and not self.host:
            raise SpecError(f"device '{self.name}' (ssh) has no host.", "Add host = \"...\" to devices.toml.")

    @property
    def emulated(self) -> bool:
        """Whether devices of this kind are emulated (their timings are no model of any hardware)."""
        return bool(device_class(self.kind).emulated)


LOCAL = DeviceSpec("local", "local")


def inventory_path() -> Path | None:
    env = os.environ.get("EDGEKIT_DEVICES")
    if env:
        return Path(env)
    if Path("devices.toml").exists():
        return Path("devices.toml")
    cfg = Path(os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config"))) / "edgekit" / "devices.toml"
    return cfg if cfg.exists() else None


def load_inventory(path: Path | None = None) -> dict[str, DeviceSpec]:
    path = path or inventory_path()
    devices = {"local": LOCAL}
    if path is None:
        return devices
    if not Path(path).exists():
        raise SpecError(f"Device inventory '{path}' does not exist.", "Create it, or unset EDGEKIT_DEVICES.")
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e}).") from None
    unknown = set(data) - {"devices"}
    if unknown:
        raise SpecError(f"{path}: unknown top-level key '{sorted(unknown)[0]}'.", "Only [devices.NAME] tables belong here.")
    for name, table in data.get("devices", {}).items():
        if not isinstance(table, dict):
            raise SpecError(f"{path}: devices.{name} must be a table.")
        devices[name] = from_mapping(DeviceSpec, {"name": name, **table}, f"{Path(path).name}: devices.{name}")
    return devices


def get_spec(name: str) -> DeviceSpec:
    inv = load_inventory()
    if name not in inv:
        where = inventory_path()
        raise UnknownName(f"Unknown device '{name}'" + (f" (not in {where})." if where else " (no devices.toml found)."),
                          did_you_mean(name, inv) or "Add it to devices.toml; 'edgekit devices list' shows them.")
    return inv[name]


def open_device(spec: DeviceSpec):
    """A Device for ``spec`` (not yet connected: devices connect on first use)."""
    cls = device_class(spec.kind)
    if spec.kind not in DEVICE_CLASSES:
        return cls.from_spec(spec)
    if spec.kind == "local":
        return cls()
    if spec.kind == "ssh":
        return cls(spec.name, spec.host, port=spec.port or None, user=spec.user or None,
                   identity_file=_expand(spec.identity_file), known_hosts=_expand(spec.known_hosts),
                   python=spec.python or None, strict_host_key_checking=spec.strict_host_key_checking,
                   connect_timeout=spec.connect_timeout, command_timeout=spec.command_timeout,
                   labels=dict(spec.labels), remote_tmp=spec.remote_tmp)
    return cls(spec.name, labels=dict(spec.labels))


def _expand(p: str) -> str | None:
    return os.path.expanduser(p) if p else None


@contextmanager
def using(name: str | None, wait_s: float = 0.0):
    """Lease the named device (default: this host) and open it; closed and released on exit."""
    from .lease import lease

    spec = get_spec(name or "local")
    with lease(spec.name, wait_s), open_device(spec) as device:
        yield device
