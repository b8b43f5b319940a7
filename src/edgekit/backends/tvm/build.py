"""relax -> tvm: compile a Relax module into a shared library for an LLVM target, untuned (the
operators' default schedules) or tuned with MetaSchedule on the device that will run it.

The artifact is a folder (``model.tvm``): ``lib.so`` (the Relax VM executable, its kernels and the
weights) and ``tvm-module.json`` (the signature the runner feeds it by: input names, shapes and
dtypes in the VM's argument order, output names; the LLVM target and the machine it runs on).
"""
from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import ConversionError
from ...core.graph import Converter
from .frontends import TOOLS, _first, _quiet, import_tvm
from .llvm import Llvm, resolve

LLVM_OPTIONS = ("mtriple", "mcpu", "mattr", "cc", "num_cores")
MODULE_FILE = "tvm-module.json"


def load_relax(path: Path):
    """The Relax module and the signature its frontend stored with it."""
    tvm = import_tvm()
    mod = tvm.ir.load_json(Path(path).read_text())
    sig = json.loads(str(mod.attrs["edgekit_signature"]))
    return mod, sig


def prepare(mod, llvm: Llvm):
    """The graph-level passes every build shares (tuned or not): inference-only decompositions,
    legalization to TIR, constant folding and operator fusion (Relax's "zero" pipeline)."""
    import tvm
    from tvm import relax

    mod = relax.transform.DecomposeOpsForInference()(mod)
    mod = relax.transform.CanonicalizeBindings()(mod)
    with llvm.target(), tvm.transform.PassContext(opt_level=3):
        mod = relax.get_pipeline("zero")(mod)
    return mod


def compile_module(mod, llvm: Llvm):
    import tvm

    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(mod, target=llvm.target())


def write_module(executable, out_dir: Path, sig: dict, llvm: Llvm, edge: str, extra: dict | None = None) -> Path:
    tvm = import_tvm()
    folder = out_dir / "model.tvm"
    folder.mkdir()
    fcompile = llvm.fcompile(edge)
    try:
        if fcompile is None:
            executable.export_library(str(folder / "lib.so"))
        else:
            executable.export_library(str(folder / "lib.so"), fcompile=fcompile)
    except Exception as e:  # noqa: BLE001  the linker's own message
        raise ConversionError(edge, f"linking the shared library failed: {_first(e)}") from None
    meta = {"format": 1, "library": "lib.so", "inputs": sig["inputs"], "outputs": sig["outputs"],
            "target": llvm.config(), "target_text": llvm.describe(), "machine": llvm.machine,
            "tvm": tvm.__version__, **(extra or {})}
    (folder / MODULE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


class TvmFromRelax(Converter):
    """The untuned build: every operator with TVM's default schedule."""

    src, dst = "relax", "tvm"
    cost = 1.0
    requires = (("tvm", "tvm"),)
    tools = TOOLS
    target_options = LLVM_OPTIONS

    @classmethod
    def refuses(cls, recipe, target):
        if target.option("trials"):
            return "does not tune (the target sets 'trials': TvmTunedFromRelax builds it on its device)"
        return super().refuses(recipe, target)

    def convert(self, artifact, out_dir, ctx):
        mod, sig = load_relax(artifact.path)
        llvm = resolve(ctx.target.options)
        try:
            with _quiet():
                ex = compile_module(prepare(mod, llvm), llvm)
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ConversionError(self.name(), f"TVM could not compile it: {_first(e)}") from None
        ctx.notes.append(f"untuned, {llvm.describe()}")
        return write_module(ex, out_dir, sig, llvm, self.name(), {"tuned": None})


class TvmTunedFromRelax(Converter):
    """The tuned build: MetaSchedule searches each operator's schedules, measuring candidates on
    the device that will run the artifact (this host: locally; a board: over TVM RPC)."""

    src, dst = "relax", "tvm"
    cost = 1.0
    on_device = True
    requires = (("tvm", "tvm"), ("xgboost", "tvm"), ("cloudpickle", "tvm"), ("psutil", "tvm"))
    tools = TOOLS + ("xgboost|xgboost-cpu",)
    target_options = LLVM_OPTIONS + ("trials", "trials_per_task")

    @classmethod
    def refuses(cls, recipe, target):
        if not target.option("trials"):
            return "tunes only targets with a trial budget (target option 'trials')"
        return super().refuses(recipe, target)

    def convert(self, artifact, out_dir, ctx):
        from .tuning import tune_and_compile

        if ctx.device.emulated:
            raise ConversionError(self.name(), f"tuning measures on the device, and '{ctx.device.name}' is emulated "
                                  "(its timings model no hardware).", "Use an untuned target there (tvm-arm64), or "
                                  "tune on the real board (a tvm-rpc device, or an SSH device with TVM).")
        mod, sig = load_relax(artifact.path)
        llvm = resolve(ctx.target.options, ctx.device)
        ex, info = tune_and_compile(self.name(), mod, llvm, ctx, artifact.digest, prepare)
        ctx.notes.append(f"MetaSchedule {info['trials_done']} trials ({info['how']}) measured on "
                         f"{ctx.device.name}, {llvm.describe()}")
        return write_module(ex, out_dir, sig, llvm, self.name(), {"tuned": info})
