"""The Node.js runner's npm packages on an SSH device (``edgekit devices setup NAME --runtime tfjs``).

Devices have no internet: the packages come from this host's npm cache (``edgekit setup tfjs``), as
one archive of what the Node runner loads: the packages its ``require`` calls reach from
@tensorflow/tfjs and @tensorflow/tfjs-backend-wasm (not playwright-core, which drives a browser on
this host). A package whose main file is a self-contained bundle (the @tensorflow ones: no
relative ``require``) travels as that file, its package.json, its licence and the ``.wasm`` files
beside it; any other package travels whole, without source maps and TypeScript. On the device the
archive is unpacked into ``~/.edgekit/npm/tfjs-<tag>/node_modules`` (the tag of tfjs_package.json,
so a changed pin is a new folder), where rt_tfjs.js looks first. Node itself must be there already.
The hook speaks to the device through its push and run alone.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

from ...core.errors import SetupFailed

RUNNER_PACKAGES = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm")  # what rt_tfjs.js requires
MIN_NODE = 18
_REQUIRE = re.compile(r"""\brequire\(\s*['"]([^'"]+)['"]\s*\)""")
_DROP = (".map", ".ts", ".tsx")  # .d.ts included
_KEEP_ALWAYS = re.compile(r"(LICEN[CS]E|NOTICE|COPYING)", re.IGNORECASE)


def _package_name(spec: str) -> str:
    parts = spec.split("/")
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def _main_file(pkg: Path) -> Path | None:
    main = json.loads((pkg / "package.json").read_text()).get("main") or "index.js"
    for cand in (pkg / main, pkg / f"{main}.js", pkg / main / "index.js"):
        if cand.is_file():
            return cand
    return None


def _requires(files) -> set[str]:
    out = set()
    for f in files:
        if f.suffix in (".js", ".cjs"):
            out |= set(_REQUIRE.findall(f.read_text(errors="replace")))
    return out


def _resolve(root: Path, pkgdir: Path, name: str) -> Path | None:
    """Node's lookup: ``node_modules/NAME`` in the package's folder, then in each folder above it."""
    p = pkgdir
    while True:
        cand = p / "node_modules" / name
        if (cand / "package.json").is_file():
            return cand
        if p == root.parent or p == p.parent:
            return None
        p = p.parent


def _package_files(pkg: Path) -> tuple[list[Path], bool]:
    """(the files of ``pkg`` a Node runner needs, whether its main file is a self-contained bundle)."""
    main = _main_file(pkg)
    if main is not None and not any(r.startswith(".") for r in _requires([main])):
        extra = [f for f in main.parent.iterdir() if f.is_file() and f.name.endswith((".wasm", ".worker.js"))]
        lic = [f for f in pkg.iterdir() if f.is_file() and _KEEP_ALWAYS.match(f.name)]
        return [pkg / "package.json", main, *extra, *lic], True
    files = []
    for dirpath, dirnames, names in os.walk(pkg):
        dirnames[:] = [d for d in dirnames if d != "node_modules"]  # nested packages are packages of their own
        files += [Path(dirpath) / n for n in names if not n.endswith(_DROP) or _KEEP_ALWAYS.match(n)]
    return files, False


def runner_files(root: Path) -> list[Path]:
    """Every file of ``root`` (a node_modules folder) that the Node runner's requires reach."""
    todo = [root / name for name in RUNNER_PACKAGES]
    seen: set[Path] = set()
    files: list[Path] = []
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        mine, bundle = _package_files(pkg)
        files += mine
        for spec in _requires(mine[1:2] if bundle else mine):
            if spec.startswith((".", "/", "node:")):
                continue
            dep = _resolve(root, pkg, _package_name(spec))
            if dep is not None:  # else a Node built-in (fs, path) or an optional dependency
                todo.append(dep)
    return files


def archive(root: Path) -> Path:
    """The runner's packages as one .tar.gz beside ``root``, made once (atomically)."""
    dest = root.parent / "device-node_modules.tar.gz"
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + f".{os.getpid()}.part")
    with tarfile.open(part, "w:gz", compresslevel=6) as tar:
        for f in sorted(set(runner_files(root))):
            tar.add(f, arcname=str(Path("node_modules") / f.relative_to(root)), recursive=False)
    os.replace(part, dest)
    return dest


def _run(device, argv, doing: str, timeout: float = 300.0) -> str:
    code, out, err = device.run(argv, timeout=timeout)
    if code != 0:
        last = (err.strip().splitlines() or out.strip().splitlines() or [f"exit code {code}"])[-1]
        raise SetupFailed(f"setting up TF.js on device '{device.name}' failed while {doing}: {last[:200]}.")
    return out.strip()


def node_on(device) -> str:
    """The version of the device's ``node`` (the runner's command), or a SetupFailed naming the fix."""
    code, out, _ = device.run(["sh", "-c", "command -v node >/dev/null && node --version"], timeout=60)
    version = out.strip().splitlines()[-1] if code == 0 and out.strip() else ""
    if not version:
        raise SetupFailed(f"device '{device.name}' has no Node.js ('node' is not on its PATH), which the TF.js "
                          "runner needs.", f"Install Node.js {MIN_NODE} or newer there (Debian: apt-get install "
                          "nodejs), then run this command again.")
    if int(re.sub(r"\D.*", "", version.lstrip("v")) or 0) < MIN_NODE:
        raise SetupFailed(f"device '{device.name}' has Node.js {version}; the TF.js runner needs {MIN_NODE} or "
                          "newer.", f"Upgrade Node.js there to {MIN_NODE} or newer, then run this command again.")
    return version


def device_setup(device, progress=print) -> dict:
    """Check Node.js on ``device``, then push and unpack the runner's npm packages into its edgekit
    folder (skipped when that folder holds them already). Returns the versions there."""
    from .npm import installed, node_modules_dir

    node = node_on(device)
    progress(f"{device.name}: Node.js {node}")
    root = node_modules_dir()
    if not installed():
        raise SetupFailed("the TF.js runner's npm packages are not installed on this host, which is where a "
                          "device gets them from.", "Run: edgekit setup tfjs")
    home = _run(device, ["sh", "-c", 'printf "%s" "$HOME"'], "finding its home folder")
    dest = f"{home}/.edgekit/npm/{root.parent.name}"
    mods = f"{dest}/node_modules"
    have = device.run(["test", "-f", f"{mods}/@tensorflow/tfjs/package.json"], timeout=60)[0] == 0
    if not have:
        tarball = archive(root)
        progress(f"{device.name}: pushing the runner's npm packages ({tarball.stat().st_size / 1e6:.1f} MB)")
        remote = device.push(tarball)
        # positional parameters: the paths are never spliced into the shell text
        _run(device, ["sh", "-c", 'set -e; rm -rf "$1.part"; mkdir -p "$1.part"; tar -xzf "$2" -C "$1.part"; '
                      'rm -rf "$1"; mv "$1.part" "$1"; rm -f "$2"', "sh", dest, remote], "unpacking them")
    check = ("const m = process.argv[1]; const tf = require(m + '/@tensorflow/tfjs'); "
             "require(m + '/@tensorflow/tfjs-backend-wasm'); console.log(tf.version.tfjs)")
    version = _run(device, ["node", "-e", check, mods], "loading them with node").splitlines()[-1]
    progress(f"{device.name}: TF.js {version} in {mods}")
    return {"node": node, "tfjs": version}
