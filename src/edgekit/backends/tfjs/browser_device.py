"""A headless Chromium as an edgekit device (devices.toml ``kind = "browser"``).

The runner's Node worker (rt_tfjs.js) runs on this host as for the tfjs runtime; told by
``EDGEKIT_TFJS_BROWSER`` to use a browser, it serves a page on 127.0.0.1 (COOP/COEP headers: cross-origin
isolated, so high-resolution timers and WASM threads), starts the system Chromium headless with a
fresh profile and flags that keep it off the network, drives it over the DevTools protocol
(playwright-core from npm, pointed at that Chromium: no browser download) and runs the model in the
page. The device therefore runs only tfjs artifacts; its files stay on this host. The record names
the browser's version and the TF.js backend that ran (``runtime_version``, and the probe).

    [devices.chromium-wasm]
    kind = "browser"
    [devices.chromium-wasm.options]
    backend = "wasm"                           # or "webgl" (SwiftShader's software WebGL without a GPU)
    executable = "/usr/lib/chromium/chromium"  # default: Debian's chromium
    args = ["--some-flag"]                     # more Chromium flags
"""
from __future__ import annotations

import json
import os
import platform
import shutil

from ...core.errors import DeviceError, SpecError
from ...devices.base import DeviceInfo, LocalDevice

BACKENDS = ("wasm", "webgl")
OPTIONS = {"backend": str, "executable": str, "args": list}
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"


def find_chromium() -> str | None:
    """Debian's Chromium binary (not its wrapper script), else a chromium on PATH."""
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserDevice(LocalDevice):
    """A headless Chromium on this host running TF.js models on one backend (wasm or webgl)."""

    kind = "browser"
    runtimes = ("tfjs",)

    def __init__(self, name: str = "browser", options: dict | None = None, labels: dict | None = None):
        super().__init__()
        options = dict(options or {})
        self.check(name, options)
        self.name = name
        self.backend = options.get("backend", "wasm")
        self.executable = options.get("executable") or find_chromium() or ""
        self.args = [str(a) for a in options.get("args", [])]
        self.labels = {"browser": "chromium", "tfjs_backend": self.backend, **(labels or {})}

    @staticmethod
    def check(name: str, options: dict) -> None:
        for key, value in options.items():
            want = OPTIONS.get(key)
            if want is None:
                raise SpecError(f"device '{name}' (browser): unknown option '{key}'.",
                                f"Options: {', '.join(sorted(OPTIONS))}.")
            if not isinstance(value, want):
                raise SpecError(f"device '{name}' (browser): option '{key}' must be {want.__name__}.")
        if options.get("backend", "wasm") not in BACKENDS:
            raise SpecError(f"device '{name}' (browser): backend '{options['backend']}' is not one of "
                            f"{', '.join(BACKENDS)}.")

    @classmethod
    def check_spec(cls, spec) -> None:
        cls.check(spec.name, dict(spec.options))

    @classmethod
    def from_spec(cls, spec):
        return cls(spec.name, dict(spec.options), dict(spec.labels))

    @classmethod
    def setup_device(cls, spec, runtimes, progress=print) -> dict:
        """Node.js and the npm packages on this host (the browser is Debian's chromium)."""
        from .npm import node_modules_dir, setup

        setup(progress)
        exe = dict(spec.options).get("executable") or find_chromium()
        if not exe:
            from ...devices.setup import SetupError

            raise SetupError(f"device '{spec.name}': no Chromium on this host.", "Install it: apt-get install chromium")
        return {"device": spec.name, "browser": exe, "node_modules": str(node_modules_dir())}

    def describe(self) -> DeviceInfo:
        return DeviceInfo(os=platform.system(), arch=platform.machine(), emulated=False, kind=self.kind)

    def spawn(self, argv, env=None):
        if not self.executable or not os.access(self.executable, os.X_OK):
            raise DeviceError(f"device '{self.name}': no Chromium at '{self.executable or 'chromium'}'.",
                              "Install Debian's chromium (apt-get install chromium), or set options.executable.")
        cfg = {"executable": self.executable, "backend": self.backend, "args": self.args}
        return super().spawn(argv, env={**(env or {}), "EDGEKIT_TFJS_BROWSER": json.dumps(cfg)})

    def run(self, argv, timeout: float = 60.0):
        raise DeviceError(f"device '{self.name}' is a browser: it runs TF.js models, not commands.")
