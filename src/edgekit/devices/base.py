"""The device interface: transport only (push files or folders, spawn a process, run a command,
pull files or folders, close) and what the device is (``describe()``). Devices know nothing of
model formats or runtimes; the runner (``runner.py``) and the session (``session.py``) do the rest
over whatever device they are given, and pass the runtime's environment variables to ``spawn``.

``LocalDevice`` is this host. ``SshDevice`` and ``QemuArm64Device`` implement the same interface.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..core.errors import DeviceError, UserError


class Process(Protocol):
    stdin: IO[str]
    stdout: IO[str]

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is: its OS (``uname -s``: "Linux"), machine (``uname -m``: "aarch64"), whether
    it is emulated (its timings are then no model of any hardware), and its kind ("ssh"...)."""

    os: str
    arch: str
    emulated: bool
    kind: str


# the device's own environment for every spawned process; the caller's ``env`` adds to it
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def spawn_env(env: dict | None) -> dict[str, str]:
    """``DEFAULT_ENV`` updated with ``env``, checked: names are shell-variable names, values strings."""
    out = dict(DEFAULT_ENV)
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"environment variable {name}: the value must be a string without NUL bytes")
        out[name] = value
    return out


class Device:
    """Transport to one place that can run the runner."""

    name: str = "device"
    kind: str = "device"
    emulated: bool = False
    labels: dict = {}
    runtimes: tuple = ()  # the only runtimes it can run (a runtime's own remote protocol); () = any

    def workdir(self) -> str:
        raise NotImplementedError

    def describe(self) -> DeviceInfo:
        """What this device is (asked of it where it is not known)."""
        raise NotImplementedError

    def push(self, local: Path, name: str | None = None) -> str:
        """Copy the file or folder ``local`` into the device's work dir, as ``name`` (default: its
        own name), keeping mode bits; return its path there. Atomic: a failed push leaves nothing."""
        raise NotImplementedError

    def pull(self, remote: str, local: Path) -> None:
        """Copy the file or folder ``remote`` to ``local`` (replacing it), keeping mode bits."""
        raise NotImplementedError

    def spawn(self, argv: list[str], env: dict | None = None) -> Process:
        """Start ``argv`` (``{python}`` is replaced by the device's Python) in the work dir with piped
        stdin/stdout/stderr; ``env`` adds environment variables to the device's defaults."""
        raise NotImplementedError

    def run(self, argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        """Run one command (an argv list, never a shell string) to completion: (code, stdout, stderr)."""
        raise NotImplementedError

    def python(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- local copies of files and folders (LocalDevice, QemuArm64Device) ----------------------------

def _part_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.part")


def copy_into_place(src: Path, dst: Path) -> None:
    """Copy the file or folder ``src`` to ``dst`` with mode bits, through a temporary name beside
    ``dst``: ``dst`` is either untouched (on failure, which raises OSError or shutil.Error) or the
    complete copy. An existing ``dst`` is replaced."""
    part = _part_name(dst)
    try:
        if src.is_dir():
            shutil.copytree(src, part, copy_function=shutil.copy)  # copy: content and mode bits
        else:
            shutil.copy(src, part)
        replace(part, dst)
    except BaseException:
        _remove(part)
        raise


def replace(part: Path, dst: Path) -> None:
    """Move ``part`` to ``dst``; an existing ``dst`` (file or folder) is moved aside first, then removed."""
    try:
        os.replace(part, dst)  # a file over a file (or a folder over nothing / an empty folder)
        return
    except OSError:
        if not (dst.exists() or dst.is_symlink()):
            raise
    old = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(dst, old)
    try:
        os.replace(part, dst)
    except OSError:
        os.replace(old, dst)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def copy_failure(e: Exception) -> str:
    """One clause for a failed local copy: the first file and its reason."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        src, _, why = e.args[0][0]  # why: str(OSError), "[Errno 2] No such file or directory: 'src'"
        reason = re.sub(r": '.*'$", "", str(why).split("] ", 1)[-1])
        return f"{src}: {reason.rstrip('.')}"
    if isinstance(e, OSError):
        return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else (e.strerror or str(e))
    return str(e) or type(e).__name__


class LocalDevice(Device):
    """This host. Files are used in place; the runner runs in a child process."""

    name = "local"
    kind = "local"

    def __init__(self):
        self._dir: str | None = None

    def workdir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="edgekit-run-")
        return self._dir

    def describe(self) -> DeviceInfo:
        return DeviceInfo(os=platform.system(), arch=platform.machine(), emulated=False, kind=self.kind)

    def push(self, local: Path, name: str | None = None) -> str:
        local = Path(local)
        if not local.exists():
            raise UserError(f"cannot push '{local}' to device '{self.name}': it does not exist.")
        return str(local.resolve())  # same file system: used in place, file or folder

    def pull(self, remote: str, local: Path) -> None:
        src, dst = Path(remote), Path(local)
        if not src.exists():
            raise DeviceError(f"device '{self.name}' has no file {remote}.")
        if src.resolve() == dst.resolve():
            return
        try:
            copy_into_place(src, dst)
        except (OSError, shutil.Error) as e:
            raise DeviceError(f"pulling {src.name} from device '{self.name}' failed ({copy_failure(e)}).") from None

    def python(self) -> str:
        return sys.executable

    def run(self, argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        argv = [self.python() if a == "{python}" else a for a in argv]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.workdir())
        return p.returncode, p.stdout, p.stderr

    def spawn(self, argv: list[str], env: dict | None = None) -> Process:
        argv = [self.python() if a == "{python}" else a for a in argv]
        env = dict(os.environ, **spawn_env(env))
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, env=env, cwd=self.workdir())

    def close(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
