"""The root file system of the emulated ARM64 device (``qemu.QemuArm64Device``), and binfmt_misc.

``build_rootfs()`` builds (once) and caches a minimal Debian bookworm arm64 root with Python 3.11,
numpy and the aarch64 builds of the runtimes (onnxruntime, ai-edge-litert), with debootstrap and
binfmt_misc (qemu-user-static). The wheels are downloaded on the host and installed inside the
root without network: the device itself never needs the internet.

Commands run in the root through ``_chroot_argv``: a private mount namespace (``unshare --mount``)
with /proc and /dev bind-mounted in before ``chroot``, never /sys (reading it under qemu-user crashes).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..core import errors
from ..core.artifacts import cache_root, write_json

DeviceError = getattr(errors, "DeviceError", errors.EdgekitError)

ARCH = "aarch64"  # the device arch whose runtime pins the root installs
SUITE = "bookworm"  # its python3 is 3.11: the cp311 aarch64 wheels below fit it
PYTHON_TAG = "3.11"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEB_PACKAGES = ("python3", "libstdc++6", "libgomp1")
NUMPY_PIN = "numpy>=1.26,<2.5"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_24_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_28_aarch64", "manylinux_2_31_aarch64", "manylinux_2_34_aarch64", "manylinux_2_35_aarch64")
STAMP = "etc/edgekit-rootfs.json"  # inside the root: the rename that publishes the root publishes it too
WHEELS_IN_ROOT = "var/cache/edgekit-wheels"
ROOT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEVICE_PYTHON = "/usr/bin/python3"
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
APT_HINT = "Install the emulator with: apt-get install qemu-user-static binfmt-support debootstrap"

# argv-only launcher: the root and the command are positional parameters, never interpolated.
_CHROOT_SH = ('r="$1"; shift; mount --rbind /proc "$r/proc" && mount --rbind /dev "$r/dev" '
              '&& exec chroot "$r" "$@"')


# ---------------------------------------------------------------------------------------------
# the root file system

def default_rootfs() -> Path:
    """Where the cached root lives: ``$EDGEKIT_QEMU_ROOTFS`` or ``cache_root()/qemu-arm64/rootfs``."""
    env = os.environ.get("EDGEKIT_QEMU_ROOTFS")
    return Path(env) if env else cache_root() / "qemu-arm64" / "rootfs"


def rootfs_info(root: Path | None = None) -> dict | None:
    """The stamp of a complete root (what is installed, pinned versions), or None if not built."""
    path = Path(root or default_rootfs()) / STAMP
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _runtimes(runtimes) -> tuple:
    """Runtime names (aliases resolved; default: every registered runtime with an aarch64 build)."""
    from ..backends import get_runtime, runtimes as registered

    if runtimes is None:
        return tuple(r.name for r in registered().values() if r.requirements(ARCH))
    return tuple(dict.fromkeys(get_runtime(r).name for r in runtimes))


def _spec(name: str):
    from ..backends import get_runtime

    return get_runtime(name)


def rootfs_ready(root: Path | None = None, runtimes=None) -> bool:
    info = rootfs_info(root)
    return bool(info) and all(r in info.get("runtimes", ()) for r in _runtimes(runtimes))


def build_rootfs(root: Path | None = None, runtimes=None, progress=print,
                 force: bool = False, mirror: str | None = None) -> Path:
    """Build (once) the cached ARM64 root and return its path; a no-op if it is already complete.

    The root is built in a temp folder beside its final place and renamed there when complete,
    so a failed or interrupted build never leaves a half root behind. Needs root privileges,
    debootstrap and qemu-user-static with binfmt_misc; about 2-4 minutes and ~300 MB."""
    progress = progress or (lambda msg: None)
    root = Path(root or default_rootfs()).absolute()
    runtimes = _runtimes(runtimes)
    unknown = [r for r in runtimes if not _spec(r).requirements(ARCH)]
    if unknown:
        raise errors.UnknownName(f"no ARM64 build of runtime '{unknown[0]}' is known.",
                                 f"Choose among: {', '.join(_runtimes(None))}.")
    if not force and rootfs_ready(root, runtimes):
        return root
    if os.geteuid() != 0:
        raise DeviceError("building the ARM64 root file system needs root privileges (debootstrap, chroot).",
                          "Run 'edgekit devices setup' as root, e.g. with sudo.")
    for tool in ("debootstrap", "chroot", "unshare", "mount"):
        if not shutil.which(tool):
            raise DeviceError(f"'{tool}' is not installed; it is needed to build the ARM64 root.", APT_HINT)
    if not ensure_binfmt():
        raise DeviceError("binfmt_misc has no enabled qemu-aarch64 entry, so this host cannot run ARM64 programs.",
                          APT_HINT + "; then: update-binfmts --enable qemu-aarch64")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root.parent / f".{root.name}.lock"):
        if not force and rootfs_ready(root, runtimes):  # built meanwhile by another process
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".part", dir=root.parent))
        log = root.parent / f"{root.name}-build.log"
        try:
            os.chmod(tmp, 0o755)  # mkdtemp gives 0700; this folder becomes the device's "/"
            t0 = time.monotonic()
            with open(log, "w") as logf:
                _build_into(tmp, runtimes, progress, logf, mirror, t0)
            _publish(tmp, root)
            # a copy of the stamp beside the root, for tools that list devices without entering it
            write_json(root.parent / f"{root.name}.json", rootfs_info(root))
        except BaseException:
            _safe_rmtree(tmp)
            raise
    info = rootfs_info(root) or {}
    progress(f"ARM64 root ready at {root} ({info.get('size_mb', '?')} MB, {info.get('build_s', 0):.0f} s)")
    return root


def _build_into(tmp: Path, runtimes, progress, logf, mirror, t0) -> None:
    mirror = mirror or debian_mirror()
    include = ",".join(DEB_PACKAGES)
    progress(f"debootstrap {SUITE} arm64 (minbase + {include}) from {mirror}")
    argv = ["unshare", "--mount", "--propagation", "private", "debootstrap", "--arch=arm64", "--variant=minbase",
            f"--include={include}"]
    if Path(KEYRING).exists():
        argv.append(f"--keyring={KEYRING}")
    _checked(argv + [SUITE, str(tmp), mirror], "debootstrap", logf, timeout=3600)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):  # the .debs and indexes: not needed
        for p in (tmp / sub).glob("*"):
            if p.is_file():
                p.unlink()

    wheels = tmp / WHEELS_IN_ROOT
    wheels.mkdir(parents=True, exist_ok=True)
    reqs = [NUMPY_PIN] + [req for r in runtimes for req in _spec(r).requirements(ARCH)]
    progress(f"downloading aarch64 wheels on the host: {' '.join(reqs)} (+ dependencies)")
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version", PYTHON_TAG, "--implementation", "cp", "--abi", "cp" + PYTHON_TAG.replace(".", ""),
            "--abi", "abi3", "--abi", "none"]
    for plat in PLATFORMS:
        argv += ["--platform", plat]
    argv += ["-d", str(wheels), "pip", *reqs]
    _checked(argv, "pip download", logf, timeout=1800)
    pip_whl = sorted(wheels.glob("pip-*.whl"))
    if not pip_whl:
        raise DeviceError("pip download gave no pip wheel to install the packages with in the ARM64 root.")

    progress("installing the wheels inside the ARM64 root (emulated, no network)")
    dev_wheels = "/" + WHEELS_IN_ROOT
    pip = [DEVICE_PYTHON, f"{dev_wheels}/{pip_whl[-1].name}/pip", "install", "--no-index", "--find-links", dev_wheels,
           "--break-system-packages", "--no-cache-dir", "--disable-pip-version-check", "--root-user-action=ignore",
           *reqs]
    _checked(_chroot_argv(tmp, pip, cwd="/"), "pip install (in the ARM64 root)", logf, timeout=3600)
    shutil.rmtree(wheels, ignore_errors=True)
    _sys_stub(tmp)

    progress("checking the ARM64 root")
    mods = {r: _spec(r).module for r in runtimes}
    code = ("import json, platform, importlib, importlib.metadata as md\n"
            f"mods = {mods!r}\n"
            "out = {'machine': platform.machine(), 'python': platform.python_version(), 'packages': {}}\n"
            "for r, m in mods.items():\n"
            "    importlib.import_module(m)\n"
            "import numpy\n"
            "for d in md.distributions():\n"
            "    out['packages'][d.metadata['Name'].lower()] = d.version\n"
            "print(json.dumps(out))\n")
    out = _checked(_chroot_argv(tmp, [DEVICE_PYTHON, "-c", code], cwd="/"), "checking the ARM64 root", logf,
                   timeout=900)
    facts = json.loads(out.strip().splitlines()[-1])
    if facts["machine"] != "aarch64":
        raise DeviceError(f"the ARM64 root reports machine '{facts['machine']}', not aarch64.")
    wanted = ["numpy"] + [_spec(r).distribution for r in runtimes if _spec(r).distribution]
    stamp = {
        "debian": SUITE, "arch": "arm64", "machine": facts["machine"], "python": facts["python"],
        "mirror": mirror, "runtimes": list(runtimes),
        "packages": {n: facts["packages"].get(n) for n in wanted},
        "all_packages": dict(sorted(facts["packages"].items())),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_s": round(time.monotonic() - t0, 1),
        "size_mb": round(_du_bytes(tmp) / 1e6),
    }
    (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


def _publish(tmp: Path, root: Path) -> None:
    if root.exists():
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        os.replace(root, old)
        os.replace(tmp, root)
        _safe_rmtree(old)
    else:
        os.replace(tmp, root)


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 ``.sources`` or one-line ``.list``)."""
    candidates = []
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*.list")) + \
        sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for para in re.split(r"\n\s*\n", text):
                fields = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.split()
                if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0] != "no":
                    for uri in fields.get("uris", []):
                        candidates += [(uri, s) for s in fields.get("suites", [])]
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    candidates.append((parts[1], parts[2]))
    for uri, suite in candidates:  # the main archive (not -security/-updates), of Debian
        if "-" not in suite and "debian" in uri and "security" not in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


# ---------------------------------------------------------------------------------------------
# binfmt_misc

def binfmt_enabled() -> bool:
    entry = BINFMT_DIR / "qemu-aarch64"
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def ensure_binfmt() -> bool:
    """Make ARM64 binaries executable here (mount binfmt_misc, enable the qemu-aarch64 entry);
    True if they are. Only root can change anything; otherwise this only looks."""
    if binfmt_enabled():
        return True
    if os.geteuid() != 0:
        return False
    if not (BINFMT_DIR / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True)
    if not binfmt_enabled() and shutil.which("update-binfmts"):
        if not (BINFMT_DIR / "qemu-aarch64").exists():
            subprocess.run(["update-binfmts", "--import", "qemu-aarch64"], capture_output=True)
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    return binfmt_enabled()


# ---------------------------------------------------------------------------------------------
# helpers

def _chroot_argv(root: Path, argv: list[str], cwd: str = "/", env: list[str] | None = None) -> list[str]:
    """Run ``argv`` inside ``root`` in a private mount namespace with /proc and /dev bound in (never
    /sys). The mounts belong to the namespace and vanish with the process: nothing to unmount."""
    env = env if env is not None else ["HOME=/root", "LANG=C.UTF-8"]
    pre = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        pre.insert(1, "--map-root-user")  # chroot and bind mounts in a user namespace
    return [*pre, "sh", "-c", _CHROOT_SH, "edgekit-chroot", str(root),
            "/usr/bin/env", "-i", "-C", cwd, ROOT_PATH_ENV, *env, *argv]


def _checked(argv: list[str], what: str, logf, timeout: float) -> str:
    logf.write(f"$ {shlex.join(argv)}\n")
    logf.flush()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                           env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{what} did not finish within {timeout:.0f} s while building the ARM64 root.",
                          f"See {getattr(logf, 'name', 'the build log')}.") from None
    logf.write(p.stdout)
    logf.flush()
    if p.returncode != 0:
        tail = [ln for ln in p.stdout.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        raise DeviceError(f"{what} failed (exit code {p.returncode}) while building the ARM64 root: "
                          f"{tail[0][:300].rstrip('.')}.",
                          f"Full log: {getattr(logf, 'name', '?')}.")
    return p.stdout


def _sys_stub(root: Path) -> None:
    """Empty CPU lists in ROOT/sys. The root never has /sys mounted; under ``qemu -L`` a path missing
    from the root falls through to the host's, and runtimes' cpuinfo then crashes on the host's
    x86 CPU topology. With these stubs it fails cleanly, as it does in the chroot."""
    cpu = Path(root) / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present"):
        if not (cpu / name).exists():
            (cpu / name).write_text("")


def _mounts_under(path: Path) -> list[str]:
    path = str(Path(path).absolute())
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                mp = line.split()[1].replace("\\040", " ")
                if mp == path or mp.startswith(path + "/"):
                    out.append(mp)
    except OSError:
        pass
    return out


def _safe_rmtree(path: Path) -> None:
    """Remove a (partial) root, but never through a mount point (a bound /dev would be wiped)."""
    if not Path(path).exists():
        return
    for mp in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "-R", "-l", mp], capture_output=True)
    left = _mounts_under(path)
    if left:
        raise DeviceError(f"'{path}' still has mounts ({left[0]}); not removing it.",
                          f"Unmount them (umount -R {left[0]}) and remove the folder by hand.")
    shutil.rmtree(path, ignore_errors=True)


def _du_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                total += st.st_blocks * 512
    return total


def _lock(path: Path):
    from ..core.artifacts import file_lock

    return file_lock(path)
