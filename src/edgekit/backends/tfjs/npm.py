"""Node.js and the runner's npm packages (``edgekit setup tfjs``), never installed at import time.

The packages (``tfjs_package.json``: pinned @tensorflow/tfjs, its WASM backend and playwright-core,
which drives the system Chromium and downloads no browser) go into a folder of edgekit's cache named
for that file's content: ``$XDG_CACHE_HOME/edgekit/npm/tfjs-<sha256[:12]>/node_modules``, or
``$EDGEKIT_TFJS_MODULES``. The Node worker (rt_tfjs.js) computes the same folder. Unlike converted
artifacts it does not follow ``$EDGEKIT_CACHE`` (tests give each session an empty one): like a
browser, it is installed once per machine.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ...core.errors import SetupFailed

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "tfjs_package.json"
NPM_TIMEOUT_S = 900


def node_modules_dir() -> Path:
    env = os.environ.get("EDGEKIT_TFJS_MODULES")
    if env:
        return Path(env)
    tag = hashlib.sha256(PACKAGE_JSON.read_bytes()).hexdigest()[:12]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "edgekit" / "npm" / f"tfjs-{tag}" / "node_modules"


def node() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def installed() -> bool:
    mods = node_modules_dir()
    return bool(node()) and all((mods / p / "package.json").exists() for p in
                                ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "playwright-core"))


def node_version() -> str:
    exe = node()
    if not exe:
        return ""
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def _install_node(progress) -> None:
    if node() and shutil.which("npm"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupFailed("Node.js (node and npm) is not installed, and edgekit can install it only as root with "
                          "apt-get.", "Install Node.js 18 or newer (Debian: apt-get install nodejs npm).")
    progress("installing Debian's nodejs and npm (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nodejs", "npm"],
                          capture_output=True, text=True, env=env, timeout=NPM_TIMEOUT_S)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupFailed(f"apt-get could not install nodejs and npm: {last[:200]}.",
                          "Run 'apt-get update' first, or install Node.js 18 or newer by hand.")


def setup(progress=print) -> Path:
    """Install Node.js if missing, then the pinned npm packages into the cache folder (atomically:
    a failed install leaves no folder behind)."""
    _install_node(progress)
    mods = node_modules_dir()
    if installed():
        return mods
    final = mods.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    shutil.copyfile(PACKAGE_JSON, part / "package.json")
    progress(f"npm install (pinned, no install scripts) into {final}")
    # --ignore-scripts: no package may download anything at install time (a browser, a binary)
    proc = subprocess.run([shutil.which("npm") or "npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                           "--no-save", "--loglevel=error"], cwd=part, capture_output=True, text=True,
                          timeout=NPM_TIMEOUT_S)
    if proc.returncode != 0:
        shutil.rmtree(part, ignore_errors=True)
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"]
        raise SetupFailed(f"'npm install' of the TF.js runner's packages failed: {last[-1][:200]}.",
                          "Check that the npm registry is reachable (npm config get registry).")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(part, final)
    return mods
