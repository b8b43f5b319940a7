"""MetaSchedule tuning: search schedules for every operator of the model by building candidates
here and measuring them on the device that will run the artifact: this host (a local runner), a
TVM RPC server (the ``tvm-rpc`` device: direct or through its tracker), or a board reached over SSH
(a server started there for the search). The tuning database is kept by model, LLVM target and
measuring device (``$EDGEKIT_CACHE/tvm-tuning/<key>``) and reused: a budget it already holds is not
tuned again, a larger one continues from it. Progress is shown per batch of candidates.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path

from ...core.errors import ConversionError
from .frontends import _first, light_tensor_intrin

TRIALS_PER_ITER = 32  # candidates per batch (one progress line each)
STATE = "edgekit-tuning.json"


def database_dir(digest: str, llvm, where: str) -> Path:
    from ...core.artifacts import cache_root

    key = hashlib.sha256(json.dumps([digest, llvm.config(), where], sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / "tvm-tuning" / key


def tune_and_compile(edge: str, mod, llvm, ctx, digest: str, prepare):
    """Tune (or reuse the database), then compile with the best schedules found. Returns the
    executable and what the manifest records of the tuning."""
    import tvm
    from tvm import relax

    from ...core.convert import device_fingerprint

    light_tensor_intrin(llvm.machine)
    trials = int(ctx.target.option("trials"))
    per_task = ctx.target.option("trials_per_task")
    mod = prepare(mod, llvm)
    target = llvm.target()
    where = device_fingerprint(ctx.device)
    work = database_dir(digest, llvm, where)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _lock(work / ".lock"):
        state = _state(work)
        todo = trials - state["trials_done"]
        if todo > 0:
            with runner_for(edge, ctx.device, llvm) as (runner, what):
                _say(f"{ctx.target.name}: MetaSchedule tuning, budget {trials} trials"
                     + (f" ({state['trials_done']} already in the database)" if state["trials_done"] else "")
                     + f", measuring on {ctx.device.name} ({what})")
                done = _tune(edge, mod, target, work, todo, per_task, runner, llvm, ctx.target.name)
            state = {"trials_done": state["trials_done"] + done, "tuning_s": state.get("tuning_s", 0.0)
                     + time.perf_counter() - t0, "measured_on": where, "target": llvm.config()}
            (work / STATE).write_text(json.dumps(state, indent=2))
        how = "database reused" if todo <= 0 else ("database extended" if trials > todo else "tuned now")
        try:
            with target, tvm.transform.PassContext(opt_level=3):
                tuned = relax.transform.MetaScheduleApplyDatabase(str(work))(mod)
            with tvm.transform.PassContext(opt_level=3):
                ex = tvm.compile(tuned, target=target)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(edge, f"compiling with the tuned schedules failed: {_first(e)}") from None
    info = {"trials": trials, "trials_per_task": per_task, "trials_done": state["trials_done"], "how": how,
            "tuning_s": round(state.get("tuning_s", 0.0), 1), "measured_on": where, "database": str(work)}
    return ex, info


def _tune(edge, mod, target, work: Path, trials: int, per_task, runner, llvm, label) -> int:
    from tvm.s_tir import meta_schedule as ms

    tasks = ms.relax_integration.extract_tasks(mod, target)
    if not tasks:
        return 0
    # every operator task gets its share of the budget (MetaSchedule's default lets the first ones take it all)
    per_task = int(per_task) if per_task else -(-trials // len(tasks))
    # its console log (task tables) stays out of the terminal; the per-task logs stay in the database folder
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.ERROR)
    builder = progress_builder(ms.builder.LocalBuilder(max_workers=None, timeout_sec=600.0,
                                                       initializer=_worker_init(llvm.machine),
                                                       f_export=_exporter(llvm.cc)),
                               trials, label, len(tasks))
    try:
        ms.relax_integration.tune_relax(
            mod, params={}, target=target, work_dir=str(work), max_trials_global=trials,
            max_trials_per_task=per_task, num_trials_per_iter=TRIALS_PER_ITER, builder=builder, runner=runner,
            cost_model="xgb")
    except Exception as e:  # noqa: BLE001
        raise ConversionError(edge, f"MetaSchedule failed: {_first(e)}") from None
    return builder.done


def progress_builder(inner, total: int, label: str, n_tasks: int):
    """A builder that says how far the search is after each batch of candidates."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import PyBuilder

    @derived_object
    class ProgressBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.done = 0
            self.t0 = time.perf_counter()

        def build(self, build_inputs):
            results = inner.build(build_inputs)
            self.done += len(build_inputs)
            failed = sum(1 for r in results if r.error_msg)
            _say(f"{label}: tuning {min(self.done, total)}/{total} trials ({n_tasks} operator tasks), "
                 f"{time.perf_counter() - self.t0:.0f} s" + (f", {failed} of this batch did not build" if failed else ""))
            return results

    return ProgressBuilder()


def _worker_init(machine: str):
    """Builder/runner workers import TVM afresh: only the CPU intrinsics (see light_tensor_intrin)."""
    def init():
        import os
        os.environ.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
        import importlib
        import sys
        import types

        import tvm.s_tir as s_tir

        name = "tvm.s_tir.tensor_intrin"
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(os.path.dirname(s_tir.__file__), "tensor_intrin")]
            pkg.__package__ = name
            sys.modules[name] = pkg
            s_tir.tensor_intrin = pkg
            importlib.import_module(f"{name}.{'arm_cpu' if machine in ('aarch64', 'arm64') else 'x86'}")
    return init


def _exporter(cc: str):
    """Candidates as shared libraries linked by the target's compiler (a board cannot link a tar)."""
    def export(mod):
        import os
        import tempfile

        path = os.path.join(tempfile.mkdtemp(), "candidate.so")
        if cc:
            from tvm.support import cc as tcc

            mod.export_library(path, fcompile=tcc.cross_compiler(cc))
        else:
            mod.export_library(path)
        return path
    return export


@contextlib.contextmanager
def runner_for(edge: str, device, llvm):
    """The MetaSchedule runner measuring on ``device``, and what it is."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if getattr(device, "kind", "") == "local":
        runner = ms.runner.LocalRunner(timeout_sec=300.0, evaluator_config=evaluator,
                                       initializer=_worker_init(llvm.machine))
        yield runner, "local runner"
        return
    from .rpc_device import endpoint_for

    with endpoint_for(edge, device) as ep:
        yield rpc_runner(ep, evaluator), f"TVM RPC, {ep.describe()}"


def rpc_runner(ep, evaluator):
    from tvm.s_tir import meta_schedule as ms

    if ep.tracker:
        host, port = ep.tracker
        config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=ep.key,
                                     session_timeout_sec=ep.timeout)
        return ms.runner.RPCRunner(config, evaluator, max_workers=1)
    config = ms.runner.RPCConfig(tracker_host=ep.host, tracker_port=ep.port, tracker_key="direct",
                                 session_timeout_sec=ep.timeout)

    def connect(cfg):  # a server without a tracker: connect to it directly
        from tvm import rpc

        return rpc.connect(cfg.tracker_host, cfg.tracker_port, session_timeout=cfg.session_timeout_sec)

    return ms.runner.RPCRunner(config, evaluator, f_create_session=connect, max_workers=1)


def _state(work: Path) -> dict:
    try:
        state = json.loads((work / STATE).read_text())
    except (OSError, ValueError):
        state = {}
    has_records = (work / "database_tuning_record.json").exists()
    return {**state, "trials_done": int(state.get("trials_done", 0)) if has_records else 0}


def _say(msg: str) -> None:
    from ...core.terminal import say

    say(f"[edgekit] {msg}")


def _lock(path: Path):
    from ...core.artifacts import file_lock

    return file_lock(path)
