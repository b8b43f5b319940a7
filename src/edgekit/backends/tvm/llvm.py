"""The LLVM target a build is for, from the target's options (data, not code), else from the device
the build runs for, else this host; and the compiler that links the shared library.

    tvm        (no options)            this host: its triple, and its CPU as LLVM names it (``znver4``),
                                       which carries the CPU's features (AVX-512, VNNI, ...)
    tvm-arm64  mtriple, mcpu, mattr    aarch64-linux-gnu, generic, +neon; linked by aarch64-linux-gnu-gcc
    tvm-tuned  (no triple)             the device it is tuned on: this host, or a board's machine
"""
from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass

from ...core.errors import ConversionError

# what a board of each machine gets when the target names no triple (a build for a device)
MACHINES = {
    "aarch64": {"mtriple": "aarch64-linux-gnu", "mcpu": "generic", "mattr": "+neon", "cc": "aarch64-linux-gnu-gcc"},
    "x86_64": {"mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v2", "mattr": "", "cc": ""},
}
CROSS_HINT = "Install the cross toolchain (Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross), or set the target option cc."


@dataclass(frozen=True)
class Llvm:
    mtriple: str
    mcpu: str
    mattr: str
    cc: str  # the compiler that links the shared library ("" = TVM's default, the host's)
    num_cores: int
    machine: str  # uname -m of the machine the code runs on

    def config(self) -> dict:
        out = {"kind": "llvm", "mtriple": self.mtriple, "mcpu": self.mcpu, "num-cores": self.num_cores}
        if self.mattr:
            out["mattr"] = [a.strip() for a in self.mattr.split(",") if a.strip()]
        return out

    def target(self):
        import tvm

        return tvm.target.Target(self.config())

    def describe(self) -> str:
        return (f"llvm -mtriple={self.mtriple} -mcpu={self.mcpu}" + (f" -mattr={self.mattr}" if self.mattr else "")
                + f" (num-cores {self.num_cores})" + (f", linked by {self.cc}" if self.cc else ""))

    def fcompile(self, edge: str):
        """The compile function of ``export_library`` (None: TVM's default host compiler)."""
        if not self.cc:
            return None
        if not shutil.which(self.cc):
            raise ConversionError(edge, f"the compiler '{self.cc}' that links {self.machine} libraries is not "
                                  "installed.", CROSS_HINT)
        from tvm.support import cc

        return cc.cross_compiler(self.cc)


def host_machine() -> str:
    return platform.machine()


def host_cpu() -> str:
    from tvm.target import codegen

    return codegen.llvm_get_system_cpu() or "generic"


def resolve(options: dict, device=None) -> Llvm:
    """The LLVM target for ``options``; a target that names no triple is built for ``device``'s
    machine (this host's CPU when that is this host)."""
    cores = int(options.get("num_cores") or 1)
    machine = _machine_of(options, device)
    here = machine == host_machine() and (device is None or getattr(device, "kind", "") == "local"
                                          or _same_host(device))
    base = dict(MACHINES.get(machine) or {"mtriple": f"{machine}-linux-gnu", "mcpu": "generic", "mattr": "",
                                          "cc": ""})
    if here:
        base.update(mtriple=f"{machine}-linux-gnu", mcpu=host_cpu(), mattr="", cc="")
    wanted = getattr(device, "llvm_options", None) or {}  # a device may say what it is (tvm-rpc options)
    for key in ("mtriple", "mcpu", "mattr", "cc"):
        if wanted.get(key) is not None:
            base[key] = wanted[key]
        if options.get(key) is not None:
            base[key] = options[key]
    return Llvm(base["mtriple"], base["mcpu"], base.get("mattr", ""), base.get("cc", ""), cores, machine)


def _machine_of(options: dict, device) -> str:
    triple = options.get("mtriple")
    if triple:
        return triple.split("-")[0].replace("arm64", "aarch64")
    if device is not None:
        return device.describe().arch
    return host_machine()


def _same_host(device) -> bool:
    """A device on this very host (a TVM RPC server on loopback): the host's CPU is its CPU."""
    return bool(getattr(device, "on_this_host", False))
