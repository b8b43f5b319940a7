"""An emulated ARM64 device: a Debian arm64 root file system run under qemu-user.

``build_rootfs()`` builds (once) and caches a minimal Debian bookworm arm64 root with Python 3.11,
numpy and the aarch64 builds of the runtimes (onnxruntime, ai-edge-litert), with debootstrap and
binfmt_misc (qemu-user-static); that side lives in ``qemu_rootfs`` and is re-exported here. The
wheels are downloaded on the host and installed inside the root without network: the device
itself never needs the internet.

``QemuArm64Device`` runs commands in that root: each process gets its own mount namespace
(``unshare --mount``) in which /proc and /dev are bind-mounted into the root before ``chroot``,
so the mounts vanish with the process, whatever happens to edgekit. /sys is never mounted
(reading it under qemu-user crashes). Without a usable binfmt_misc entry, the device falls back
to ``qemu-aarch64-static -L ROOT`` if that works.

Emulation is 300-500x slower than the real thing: this device checks that artifacts load and
give the same answers on ARM64 builds of the runtimes; its timings are no model of any hardware.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..core.errors import UserError
from .base import Device, DeviceInfo, Process, copy_failure, copy_into_place, spawn_env
from .qemu_rootfs import (
    APT_HINT,
    BINFMT_DIR,
    DEB_PACKAGES,
    DEFAULT_MIRROR,
    DEVICE_PYTHON,
    KEYRING,
    NUMPY_PIN,
    PLATFORMS,
    PYTHON_TAG,
    ROOT_PATH_ENV,
    STAMP,
    SUITE,
    WHEELS_IN_ROOT,
    DeviceError,
    _chroot_argv,
    _sys_stub,
    binfmt_enabled,
    build_rootfs,
    debian_mirror,
    default_rootfs,
    ensure_binfmt,
    rootfs_info,
    rootfs_ready,
)

__all__ = [
    "APT_HINT", "BINFMT_DIR", "DEB_PACKAGES", "DEFAULT_MIRROR", "DEVICE_PYTHON", "KEYRING", "NUMPY_PIN", "PLATFORMS",
    "PYTHON_TAG", "ROOT_PATH_ENV", "STAMP", "SUITE",
    "WHEELS_IN_ROOT", "DeviceError", "QemuArm64Device", "binfmt_enabled", "build_rootfs", "debian_mirror",
    "default_rootfs", "ensure_binfmt", "rootfs_info", "rootfs_ready",
]


# ---------------------------------------------------------------------------------------------
# the device

class QemuArm64Device(Device):
    """A Debian arm64 root run under qemu-user emulation. Transport only, like every device."""

    kind = "qemu-arm64"
    emulated = True

    def __init__(self, name: str = "qemu-arm64", root: Path | str | None = None, mode: str | None = None,
                 labels: dict | None = None):
        self.name = name
        self.root = Path(root or default_rootfs()).absolute()
        self.info = rootfs_info(self.root)
        if self.info is None:
            raise DeviceError(f"device '{name}' has no ARM64 root file system yet (looked in {self.root}).",
                              f"Build it once with: edgekit devices setup {name}")
        self.labels = {"arch": "aarch64", "os": f"debian-{self.info.get('debian', SUITE)}", "emulator": "qemu-user",
                       **(labels or {})}
        self.mode = mode or self._pick_mode()
        if self.mode not in ("chroot", "qemu-user"):
            raise ValueError(f"unknown mode {self.mode!r}")
        self._dir: Path | None = None
        self._procs: list[subprocess.Popen] = []

    # -- how processes are started
    def _pick_mode(self) -> str:
        if shutil.which("unshare") and shutil.which("chroot") and ensure_binfmt():
            return "chroot"
        qemu = shutil.which("qemu-aarch64-static")
        if qemu:
            with contextlib.suppress(OSError):
                _sys_stub(self.root)
            try:
                probe = "import platform, numpy; print(platform.machine())"
                p = subprocess.run(self._qemu_argv([DEVICE_PYTHON, "-c", probe]),
                                   capture_output=True, text=True, timeout=120, env=self._host_env())
                if p.returncode == 0 and p.stdout.strip() == "aarch64":
                    return "qemu-user"
            except (OSError, subprocess.SubprocessError):
                pass
        raise DeviceError(f"device '{self.name}' cannot run ARM64 programs on this host: binfmt_misc has no enabled "
                          "qemu-aarch64 entry and qemu-aarch64-static does not work.",
                          APT_HINT + "; then, as root: update-binfmts --enable qemu-aarch64")

    def _env(self, extra: dict | None = None) -> dict:
        return {"HOME": "/root", "LANG": "C.UTF-8", **spawn_env(extra)}

    def _host_env(self, extra: dict | None = None) -> dict:
        return {"PATH": ROOT_PATH_ENV.split("=", 1)[1], **self._env(extra), "QEMU_LD_PREFIX": str(self.root)}

    def _argv(self, argv: list[str], extra_env: dict | None = None) -> list[str]:
        argv = [self.python() if a == "{python}" else str(a) for a in argv]
        if not argv:
            raise ValueError("empty argv")
        if self.mode == "qemu-user":
            return self._qemu_argv(argv)
        env = [f"{k}={v}" for k, v in self._env(extra_env).items()]  # arguments of env -i: no shell
        return _chroot_argv(self.root, argv, cwd=self.workdir(), env=env)

    def _qemu_argv(self, argv: list[str]) -> list[str]:
        prog = argv[0]
        if "/" not in prog:
            for d in ("usr/local/bin", "usr/bin", "bin", "usr/sbin", "sbin"):
                if (self.root / d / prog).exists():
                    prog = f"/{d}/{prog}"
                    break
        host_prog = str(self.root / prog.lstrip("/")) if prog.startswith("/") else prog
        return [shutil.which("qemu-aarch64-static") or "qemu-aarch64-static", "-L", str(self.root), host_prog,
                *argv[1:]]

    # -- paths: in chroot mode the device sees ROOT as "/"; under qemu -L, host paths work as they are
    def _device_path(self, host: Path | str) -> str:
        host = Path(host)
        if self.mode == "qemu-user":
            return str(host)
        return "/" + str(host.relative_to(self.root))

    def _host_path(self, remote: str) -> Path:
        if not remote.startswith("/"):
            self.workdir()
            p = self._dir / remote
        elif self.mode == "qemu-user" and Path(remote).is_relative_to(self.root):
            p = Path(remote)
        else:
            p = self.root / remote.lstrip("/")
        resolved = p.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise DeviceError(f"'{remote}' on device '{self.name}' points outside its root file system.")
        return resolved

    # -- the Device interface
    def python(self) -> str:
        return DEVICE_PYTHON

    def describe(self) -> DeviceInfo:
        return DeviceInfo(os="Linux", arch="aarch64", emulated=True, kind=self.kind)

    def workdir(self) -> str:
        if self._dir is None:
            tmp = self.root / "tmp"
            tmp.mkdir(exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="edgekit-", dir=tmp))
            os.chmod(self._dir, 0o755)
        return self._device_path(self._dir)

    def push(self, local: Path, name: str | None = None) -> str:
        """Copy the file or folder ``local`` into the root's work folder (through a temporary name)."""
        local = Path(local)
        if not local.exists():
            raise UserError(f"cannot push '{local}' to device '{self.name}': it does not exist.")
        self.workdir()
        dst = self._dir / (name or local.name)
        try:
            copy_into_place(local, dst)
        except (OSError, shutil.Error) as e:
            raise DeviceError(f"pushing {local.name} to device '{self.name}' failed ({copy_failure(e)}).") from None
        return self._device_path(dst)

    def pull(self, remote: str, local: Path) -> None:
        src = self._host_path(remote)
        local = Path(local)
        if not src.exists():
            raise DeviceError(f"'{remote}' does not exist on device '{self.name}'.")
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            copy_into_place(src, local)
        except (OSError, shutil.Error) as e:
            raise DeviceError(f"pulling {src.name} from device '{self.name}' failed ({copy_failure(e)}).") from None

    def _popen_kw(self, extra_env: dict | None = None) -> dict:
        self.workdir()
        if self.mode == "qemu-user":
            return {"cwd": str(self._dir), "env": self._host_env(extra_env)}
        return {"env": {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}}

    def spawn(self, argv: list[str], env: dict | None = None) -> Process:
        full, kw = self._argv(argv, env), self._popen_kw(env)
        p = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1, **kw)
        self._procs = [q for q in self._procs if q.poll() is None] + [p]
        return p

    def run(self, argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        full, kw = self._argv(argv), self._popen_kw()
        try:
            p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"'{shlex.join(argv)}' did not finish within {timeout:g} s on device '{self.name}' "
                              "(emulated: 300-500x slower than native); it was stopped.") from None
        return p.returncode, p.stdout, p.stderr

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(Exception):
                    p.wait(timeout=10)
        self._procs = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
