"""Devices transport: push files, spawn a process, pull files, probe. They know nothing of formats.

``LocalDevice`` is this host. Remote devices (SSH, emulated ARM64) implement the same
interface; the runner session (``session.py``) works with any of them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Protocol


class Process(Protocol):
    stdin: IO[str]
    stdout: IO[str]

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class Device:
    """Transport to one place that can run the runner."""

    name: str = "device"
    emulated: bool = False

    def workdir(self) -> str:
        raise NotImplementedError

    def push(self, local: Path, name: str | None = None) -> str:
        """Copy ``local`` into the device's work dir; return its path there."""
        raise NotImplementedError

    def pull(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def spawn(self, argv: list[str]) -> Process:
        """Start ``argv`` (``{python}`` is replaced by the device's Python) with piped stdin/stdout."""
        raise NotImplementedError

    def python(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalDevice(Device):
    """This host. Files are used in place; the runner runs in a child process."""

    name = "local"

    def __init__(self):
        self._dir: str | None = None

    def workdir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="edgekit-run-")
        return self._dir

    def push(self, local: Path, name: str | None = None) -> str:
        return str(Path(local).resolve())  # same file system: no copy needed

    def pull(self, remote: str, local: Path) -> None:
        if Path(remote).resolve() != Path(local).resolve():
            shutil.copyfile(remote, local)

    def python(self) -> str:
        return sys.executable

    def spawn(self, argv: list[str]) -> Process:
        argv = [self.python() if a == "{python}" else a for a in argv]
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, env=env, cwd=self.workdir())

    def close(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
