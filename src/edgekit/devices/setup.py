"""``edgekit devices setup``: put runtimes on a device that has none, with no internet on the device.

Wheels are downloaded on this host for the device's platform (its arch, glibc and Python, as
probed), pushed, and installed into an edgekit-owned environment on the device
(``~/.edgekit/venv``, made with ``venv --without-pip`` and a pushed pip wheel). The pinned
versions are returned and recorded in ``~/.edgekit/versions.json`` on the device.
A runtime that is not a Python package (its backend.toml names a ``device_setup`` hook) is put
on the device by that hook, through the device's push and run alone.
For the emulated ARM64 device, setup builds (or reuses) its root, which carries the runtimes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.errors import EdgekitError
from .inventory import DeviceSpec, open_device
from .lease import lease

BASE = ["numpy>=1.26,<2.5"]
ENV = "~/.edgekit/venv"

PROBE = ("import json, platform, sys, os; "
         "print(json.dumps({'arch': platform.machine(), 'py': '%d.%d' % sys.version_info[:2], "
         "'libc': platform.libc_ver(), 'home': os.path.expanduser('~')}))")


class SetupError(EdgekitError):
    exit_code = 7


def platform_tags(arch: str, libc: tuple) -> list[str]:
    """Every manylinux tag the device's glibc accepts, newest first."""
    name, version = libc if libc else ("glibc", "2.17")
    if name != "glibc":
        raise SetupError(f"the device's C library is {name or 'unknown'}; only glibc (manylinux) wheels are "
                         "supported.", "Install the runtimes on the device by hand.")
    major, minor = (int(x) for x in version.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{arch}"]


def download_wheels(dest: Path, requirements: list[str], arch: str, py: str, libc: tuple) -> list[Path]:
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--only-binary=:all:",
            "--python-version", py, "--implementation", "cp", "-d", str(dest)]
    for tag in platform_tags(arch, libc):
        argv += ["--platform", tag]
    proc = subprocess.run(argv + requirements + ["pip"], capture_output=True, text=True)
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        raise SetupError(f"pip could not download wheels for {arch} / Python {py}: "
                         f"{(last or ['no output'])[-1][:200]}.", "Check the package index is reachable from this host.")
    return sorted(dest.glob("*.whl"))


def setup(spec: DeviceSpec, runtimes: list[str], progress=print, required: bool = True) -> dict:
    """Put ``runtimes`` on the device. A runtime whose backend declares ``device_setup`` (one pip cannot
    install) is put there by that hook; the others as pip wheels into ``~/.edgekit/venv``. With
    ``required`` off (no runtime was named), a hook that cannot set its runtime up is reported under
    ``skipped`` instead of failing the rest."""
    from .inventory import DEVICE_CLASSES, device_class

    if spec.kind not in DEVICE_CLASSES:  # a kind a backend brings sets itself up, if it can
        cls = device_class(spec.kind)
        if not hasattr(cls, "setup_device"):
            raise SetupError(f"device '{spec.name}' (kind {spec.kind}) has nothing edgekit can set up.")
        return cls.setup_device(spec, runtimes, progress)
    if spec.kind == "qemu-arm64":
        from .qemu import build_rootfs, rootfs_info

        root = build_rootfs(runtimes=tuple(runtimes), progress=progress)
        return dict(rootfs_info(root) or {}, device=spec.name, rootfs=str(root))
    if spec.kind == "local":
        raise SetupError("the local device uses edgekit's own environment.", "Install extras with pip instead.")
    from ..backends import get_runtime

    specs = [get_runtime(rt) for rt in runtimes]
    hooked = [s for s in specs if s.device_setup]
    wheels = [s for s in specs if not s.device_setup]
    result: dict = {"device": spec.name}
    installed: dict = {}
    with lease(spec.name), open_device(spec) as device:
        if wheels or not hooked:
            result.update(_python_env(spec, device, wheels, progress))
            installed.update(result.pop("installed"))
        for rt in hooked:
            progress(f"{spec.name}: setting up runtime {rt.name}")
            try:
                got = rt.setup_on_device(device, progress)  # {name: version}
            except EdgekitError as e:
                if required:
                    raise
                result.setdefault("skipped", {})[rt.name] = e.message
                progress(f"{spec.name}: runtime {rt.name} skipped: {e.message}")
                continue
            installed.update(got)
        if installed:
            _record_versions(device, installed)
    result["installed"] = installed
    return result


def _record_versions(device, versions: dict) -> None:
    """Merge ``versions`` into ``~/.edgekit/versions.json`` on the device."""
    code, out, _ = device.run(["sh", "-c", 'cat "$HOME/.edgekit/versions.json" 2>/dev/null || true'])
    try:
        old = json.loads(out) if code == 0 and out.strip() else {}
    except ValueError:
        old = {}
    merged = {**(old if isinstance(old, dict) else {}), **versions}
    device.run(["sh", "-c", 'mkdir -p "$HOME/.edgekit" && printf "%s" "$1" > "$HOME/.edgekit/versions.json"', "sh",
                json.dumps(merged)])


def _python_env(spec: DeviceSpec, device, specs, progress) -> dict:
    """Wheels fetched here for the device's platform, pushed, installed into ``~/.edgekit/venv`` there."""
    code, out, err = device.run(["python3", "-c", PROBE], timeout=60)
    if code != 0:
        raise SetupError(f"device '{spec.name}' has no working python3 ({err.strip()[:120]}).",
                         "Install Python 3 on the device.")
    facts = json.loads(out.strip().splitlines()[-1])
    progress(f"{spec.name}: {facts['arch']}, Python {facts['py']}, {facts['libc'][0]} {facts['libc'][1]}")
    requirements = BASE + [req for rt in specs for req in rt.requirements(facts["arch"])]
    dists = ["numpy"] + [rt.distribution for rt in specs if rt.distribution]
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"downloading wheels for {facts['arch']} on this host: {' '.join(requirements)}")
        wheels = download_wheels(Path(tmp), requirements, facts["arch"], facts["py"], tuple(facts["libc"]))
        remote = [device.push(w, w.name) for w in wheels]
    wheel_dir = remote[0].rsplit("/", 1)[0]
    pip_whl = next(r for r in remote if r.rsplit("/", 1)[1].startswith("pip-"))
    env = f"{facts['home']}/.edgekit/venv"
    steps = [["python3", "-m", "venv", "--without-pip", "--clear", env],
             [f"{env}/bin/python", f"{pip_whl}/pip", "install", "-q", "--no-index", "--find-links", wheel_dir,
              *requirements],
             [f"{env}/bin/python", "-c", "import json, sys, importlib.metadata as m; print(json.dumps({d: m.version(d) "
              "for d in sys.argv[1:] if [x for x in m.distributions() if x.metadata['Name'].lower() == d]}))",
              *dists]]
    for argv in steps:
        progress(f"{spec.name}: {' '.join(argv[:3])} ...")
        code, out, err = device.run(argv, timeout=900)
        if code != 0:
            raise SetupError(f"setting up device '{spec.name}' failed at '{argv[0]} {argv[1]}': "
                             f"{(err.strip().splitlines() or ['no output'])[-1][:200]}.")
    versions = json.loads(out.strip().splitlines()[-1])
    return {"env": env, "arch": facts["arch"], "python": facts["py"], "installed": versions}
