"""A runner session: worker processes on a device, spoken to over JSON lines.

The session ships the runner folder (``runner/worker.py``, ``runner/runtime_base.py`` and the
runtime files of the runtimes it may load, taken from their backends) to the device once, starts
a worker for a runtime's launcher when the first artifact of that runtime is loaded (Python
runtimes share one ``python worker.py serve``), and sends requests. Arrays go as ``.npz`` files
through the device's push/pull. A crash or a hang of a runtime ends in a :class:`RunnerError`,
never in a hung or dead edgekit.
"""
from __future__ import annotations

import hashlib
import json
import queue
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ..devices import Device
from .errors import RunnerError

RUNNER_DIR = Path(__file__).resolve().parent.parent / "runner"
PYTHON_WORKER = ("{python}", "{runner}/worker.py", "serve")


def stage_runner(specs) -> Path:
    """The runner folder for these runtimes, assembled once in the cache (content-addressed)."""
    from .artifacts import atomic_dir, cache_root

    files = [RUNNER_DIR / "worker.py", RUNNER_DIR / "runtime_base.py"]
    for spec in specs:
        files += [f for f in spec.runner_files() if f not in files]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    final = cache_root() / "runner" / h.hexdigest()[:16]
    if not (final / "worker.py").exists():
        with atomic_dir(final) as tmp:
            for f in files:
                shutil.copy2(f, tmp / f.name)
    return final


class _Worker:
    """One process on the device speaking the runner protocol."""

    def __init__(self, device: Device, argv: list[str], env: dict, timeout: float):
        self.device = device
        self.timeout = timeout
        self.command = argv[0] if argv else ""
        self.spec = None  # the runtime it was started for (the shared Python worker: the first one)
        self._lines: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        self.proc = device.spawn(argv, env=env)
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        if getattr(self.proc, "stderr", None) is not None:
            threading.Thread(target=self._drain_stderr, daemon=True).start()
        hello = self.read("starting the runner")
        if not hello.get("ready"):
            raise RunnerError(f"the runner on {device.name} did not start: {hello}")

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-50]

    def read(self, doing: str) -> dict:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.proc.kill()
            raise RunnerError(f"the runner on {self.device.name} did not answer within {self.timeout:.0f} s while "
                              f"{doing}; it was stopped.") from None
        if line is None:
            code = self.proc.wait(timeout=10)
            time.sleep(0.05)  # let the stderr reader take the last lines
            tail = "".join(self._stderr[-3:]).strip().splitlines()
            missing = re.search(r"No module named '([\w.]+)'", "".join(self._stderr[-5:]))
            if missing and doing == "starting the runner":
                name = self.device.name
                raise RunnerError(f"the runner cannot start on {name}: its Python has no '{missing.group(1)}'.",
                                  f"Run: edgekit devices setup {name}" if name != "local" else
                                  f"Install it: pip install {missing.group(1)}")
            if code == 127 and doing == "starting the runner" and self.command != "{python}":
                name = self.device.name
                raise RunnerError(f"the runner cannot start on {name}: it has no '{self.command}' on its PATH.",
                                  f"Install it on {name}, then run: edgekit devices setup {name}"
                                  if name != "local" else f"Install '{self.command}' on this host.")
            detail = f" Last output: {tail[-1][:200]}" if tail else ""
            raise RunnerError(f"the runner on {self.device.name} crashed (exit code {code}) while {doing}.{detail}")
        return json.loads(line)

    def request(self, doing: str, **req) -> dict:
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read below reports the crash
        resp = self.read(doing)
        if not resp.get("ok"):
            # the worker's error may span lines (runtimes embed their own reports): keep the first
            text = " ".join((str(resp.get("error") or "").strip().splitlines() or ["no detail"])[0].split())
            err = RunnerError(f"the runner on {self.device.name} failed while {doing}: {text[:300].rstrip('.')}.")
            err.remote_kind = resp.get("kind")
            err.remote_text = text.split(": ", 1)[1] if text.startswith(f"{resp.get('kind')}: ") else text
            raise err
        return resp

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


class RunnerSession:
    """Runner workers on one device. ``runtimes`` names the runtimes it may load (default: all)."""

    def __init__(self, device: Device, timeout: float = 600.0, runtimes=None):
        from ..backends import get_runtime, runtimes as all_runtimes

        self.device = device
        self.timeout = timeout
        self.specs = [get_runtime(r) for r in runtimes] if runtimes else list(all_runtimes().values())
        self.remote_dir = device.push(stage_runner(self.specs), "edgekit-runner")
        self._workers: dict[tuple, _Worker] = {}
        self._current: _Worker | None = None
        self.last_usage = None
        python = [s for s in self.specs if s.launcher == "python"]
        if python or not self.specs:  # start the Python worker now: a device that cannot run it says so at once
            self._current = self._worker(python[0] if python else None)

    # -- workers
    def _argv(self, spec) -> tuple:
        return tuple(getattr(spec, "command", ()) or PYTHON_WORKER) if spec is not None else PYTHON_WORKER

    def _worker(self, spec) -> _Worker:
        argv = self._argv(spec)
        if argv not in self._workers:
            env = {}
            for s in self.specs:
                if self._argv(s) == argv:
                    env.update(s.env)
            self._workers[argv] = _Worker(self.device, [a.replace("{runner}", self.remote_dir) for a in argv], env,
                                          self.timeout)
            self._workers[argv].spec = spec
        return self._workers[argv]

    @property
    def proc(self):
        return (self._current or next(iter(self._workers.values()))).proc

    def request(self, doing: str, **req) -> dict:
        if self._current is None:
            raise RunnerError(f"no artifact is loaded on {self.device.name} while {doing}.")
        return self._current.request(doing, **req)

    # -- the protocol
    def load(self, artifact: Path, runtime: str, threads: int = 1) -> dict:
        from ..backends import get_runtime

        spec = get_runtime(runtime)
        only = getattr(self.device, "runtimes", ())
        if only and spec.name not in only:
            raise RunnerError(f"device '{self.device.name}' runs only {', '.join(only)} artifacts, not {spec.name}.",
                              "Measure the other targets on another device.")
        if spec not in self.specs:
            raise RunnerError(f"this session on {self.device.name} was not started for runtime '{spec.name}'.")
        self._current = self._worker(spec)
        remote = self.device.push(Path(artifact))
        try:
            return self.request(f"loading {Path(artifact).name}", op="load", artifact=remote, runtime=spec.name,
                                module=spec.runner_module, threads=threads)
        except RunnerError as e:
            kind = getattr(e, "remote_kind", None)
            if kind is None:
                raise  # a crash or a hang: the message already says so
            if kind in ("ImportError", "ModuleNotFoundError"):
                raise self._not_installed(e, spec) from None
            if kind == "WrongPlatform":  # the runtime's one sentence: no artifact is at fault, nothing to retry
                raise RunnerError(e.remote_text.rstrip(".") + ".") from None
            raise RunnerError(e.message, f"'{artifact}' may be truncated or not a {spec.name} model; re-create it "
                              "with 'edgekit convert'.") from None

    def _not_installed(self, e: RunnerError, spec) -> RunnerError:
        return RunnerError(e.message, f"Install the {spec.name} runtime where the runner runs ({self.device.name}): "
                           + (spec.install_hint() if self.device.name == "local" else
                              f"edgekit devices setup {self.device.name} --runtime {spec.name}") + ".")

    def _push_arrays(self, arrays: dict) -> str:
        path = Path(_local_tmp()) / f"in-{uuid.uuid4().hex[:8]}.npz"
        np.savez(path, **arrays)
        return self.device.push(path)

    def infer(self, arrays: dict, stacked=()) -> dict:
        """Outputs for every sample of ``arrays`` (``stacked``: inputs fed one sample at a time)."""
        remote_in = self._push_arrays(arrays)
        head, _, name = remote_in.rpartition("/")
        remote_out = f"{head}/out-{name[3:]}"
        resp = self.request("running inference", op="infer", inputs=remote_in, outputs=remote_out,
                            stacked=list(stacked))
        self.last_usage = resp.get("usage")  # what the runtime chose for these samples (shape buckets), if anything
        local_out = Path(_local_tmp()) / Path(remote_out).name
        self.device.pull(remote_out, local_out)
        with np.load(local_out) as z:
            return {k: z[k] for k in z.files}

    def bench(self, arrays: dict, stacked=(), **params) -> dict:
        return self.request("benchmarking", op="bench", inputs=self._push_arrays(arrays), stacked=list(stacked),
                            **params)

    def env(self) -> dict:
        """The device's environment and the versions of the session's Python runtimes there."""
        # a session of non-Python runtimes only asks its first runtime's worker (started if need be)
        worker = self._workers.get(PYTHON_WORKER) or self._current or self._worker(self.specs[0])
        probe = {s.name: {"module": s.module, "runner": s.runner_module} for s in self.specs
                 if self._argv(s) == PYTHON_WORKER}
        try:
            return worker.request("probing the environment", op="env", probe=probe)
        except RunnerError as e:
            if getattr(e, "remote_kind", None) in ("ImportError", "ModuleNotFoundError") and worker.spec is not None:
                raise self._not_installed(e, worker.spec) from None
            raise

    def close(self) -> None:
        for w in self._workers.values():
            w.close()
        self._workers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_TMP: str | None = None


def _local_tmp() -> str:
    global _TMP
    if _TMP is None:
        import atexit
        import tempfile

        _TMP = tempfile.mkdtemp(prefix="edgekit-io-")
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP
