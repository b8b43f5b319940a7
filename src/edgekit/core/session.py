"""A runner session: one worker process on a device, spoken to over JSON lines.

The session pushes ``runner.py`` and the artifact, starts ``python runner.py serve`` once, and
sends requests. Arrays go as ``.npz`` files through the device's push/pull. A crash or a hang
of the runtime ends in a :class:`RunnerError`, never in a hung or dead edgekit.
"""
from __future__ import annotations

import json
import queue
import threading
import uuid
from pathlib import Path

import numpy as np

from ..runner import worker as runner_module
from ..devices import Device
from .errors import RunnerError


class RunnerSession:
    def __init__(self, device: Device, timeout: float = 600.0):
        self.device = device
        self.timeout = timeout
        self._lines: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        runner_path = device.push(Path(runner_module.__file__), "runner.py")
        self.proc = device.spawn(["{python}", runner_path, "serve"])
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        if getattr(self.proc, "stderr", None) is not None:
            threading.Thread(target=self._drain_stderr, daemon=True).start()
        hello = self._read("starting the runner")
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

    def _read(self, doing: str) -> dict:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.proc.kill()
            raise RunnerError(f"the runner on {self.device.name} did not answer within {self.timeout:.0f} s while "
                              f"{doing}; it was stopped.") from None
        if line is None:
            code = self.proc.wait(timeout=10)
            tail = "".join(self._stderr[-3:]).strip().splitlines()
            detail = f" Last output: {tail[-1][:200]}" if tail else ""
            raise RunnerError(f"the runner on {self.device.name} crashed (exit code {code}) while {doing}.{detail}")
        return json.loads(line)

    def request(self, doing: str, **req) -> dict:
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read below reports the crash
        resp = self._read(doing)
        if not resp.get("ok"):
            # the worker's error may span lines (runtimes embed their own reports): keep the first
            text = " ".join((str(resp.get("error") or "").strip().splitlines() or ["no detail"])[0].split())
            err = RunnerError(f"the runner on {self.device.name} failed while {doing}: {text[:300].rstrip('.')}.")
            err.remote_kind = resp.get("kind")
            raise err
        return resp

    def load(self, artifact: Path, runtime: str, threads: int = 1) -> dict:
        remote = self.device.push(Path(artifact))
        try:
            return self.request(f"loading {Path(artifact).name}", op="load", artifact=remote, runtime=runtime,
                                threads=threads)
        except RunnerError as e:
            kind = getattr(e, "remote_kind", None)
            if kind is None:
                raise  # a crash or a hang: the message already says so
            if kind in ("ImportError", "ModuleNotFoundError"):
                hint = f"Install the {runtime} runtime where the runner runs ({self.device.name})."
            else:
                hint = (f"'{artifact}' may be truncated or not a {runtime} model; re-create it with "
                        "'edgekit convert'.")
            raise RunnerError(e.message, hint) from None

    def _push_arrays(self, arrays: dict) -> str:
        path = Path(_local_tmp()) / f"in-{uuid.uuid4().hex[:8]}.npz"
        np.savez(path, **arrays)
        return self.device.push(path)

    def infer(self, arrays: dict) -> dict:
        remote_in = self._push_arrays(arrays)
        head, _, name = remote_in.rpartition("/")
        remote_out = f"{head}/out-{name[3:]}"
        self.request("running inference", op="infer", inputs=remote_in, outputs=remote_out)
        local_out = Path(_local_tmp()) / Path(remote_out).name
        self.device.pull(remote_out, local_out)
        with np.load(local_out) as z:
            return {k: z[k] for k in z.files}

    def bench(self, arrays: dict, **params) -> dict:
        return self.request("benchmarking", op="bench", inputs=self._push_arrays(arrays), **params)

    def env(self) -> dict:
        return self.request("probing the environment", op="env")

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_TMP: str | None = None


def _local_tmp() -> str:
    global _TMP
    if _TMP is None:
        import atexit
        import shutil
        import tempfile

        _TMP = tempfile.mkdtemp(prefix="edgekit-io-")
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP
