"""A remote process on an SSH channel, shaped like ``subprocess.Popen(text=True)``.

Every remote command runs under ``_WRAPPER``, a tiny ``sh`` script that first reports its pid
(``_PID_MARK <pid>``) and then ``exec``s the command, so the process can be signalled by pid.
"""
from __future__ import annotations

import io
import shlex
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from ..core.errors import DeviceError

if TYPE_CHECKING:
    from .ssh import SshDevice

# The remote side of every command: report the pid, enter the folder, export the NAME=VALUE
# arguments up to "--" (each one quoted word: ``export "$1"`` assigns it literally, nothing in the
# value is expanded), then become the command (exec keeps the pid), so it can be signalled by pid.
_PID_MARK = "edgekit-pid"
_PID_LINE = _PID_MARK + " "  # how the pid line starts
_WRAPPER = (f'echo "{_PID_MARK} $$"; cd "$1" || exit 125; shift; '
            'while [ $# -gt 0 ] && [ "$1" != -- ]; do export "$1" || exit 125; shift; done; shift; exec "$@"')
LOST_EXIT = 255  # the exit code OpenSSH's client uses when the connection fails


def _wrapped(cwd: str, argv: list[str], env: dict[str, str]) -> str:
    """The remote command line: the wrapper, then its arguments, every one quoted by ``shlex``.
    ``env`` must be checked already (``base.spawn_env``: names are shell-variable names)."""
    return "exec " + shlex.join(["sh", "-c", _WRAPPER, "sh", cwd, *(f"{k}={v}" for k, v in env.items()), "--",
                                 *argv])


def _pid_of(out: bytes) -> int | None:
    for line in bytes(out).decode("utf-8", "replace").splitlines():
        if line.startswith(_PID_LINE):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _strip_pid(out: bytes) -> str:
    """Drop everything up to and including the pid line (login scripts may print before it)."""
    text = bytes(out).decode("utf-8", "replace")
    mark = text.find(_PID_LINE)
    if mark < 0:
        return text
    end = text.find("\n", mark)
    return "" if end < 0 else text[end + 1:]


def _drain(chan, out: bytearray, err: bytearray, deadline: float) -> None:
    """Read a command's stdout into ``out`` and stderr into ``err`` until it exits; TimeoutError
    once ``deadline`` (a time.monotonic() value) passes, with what came so far kept."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        chan.settimeout(min(left, 0.05))  # wakes up to drain stderr on long runs
        try:
            data = chan.recv(65536)
        except TimeoutError:
            data = None
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if data == b"":
            break
        if data:
            out += data
    while True:
        data = chan.recv_stderr(65536)
        if not data:
            break
        err += data
    if not chan.status_event.wait(max(deadline - time.monotonic(), 0.01)):
        raise TimeoutError


class _ChannelReader(io.RawIOBase):
    def __init__(self, chan, stderr: bool):
        self._recv = chan.recv_stderr if stderr else chan.recv

    def readable(self):
        return True

    def readinto(self, b):
        try:
            data = self._recv(len(b))
        except TimeoutError:
            raise
        except Exception:
            return 0  # a dead channel reads as end of file
        b[:len(data)] = data
        return len(data)


class _ChannelWriter(io.RawIOBase):
    def __init__(self, chan):
        self._chan = chan

    def writable(self):
        return True

    def write(self, b):
        try:
            self._chan.sendall(bytes(b))
        except Exception as e:
            raise BrokenPipeError(str(e) or "the channel is closed") from None
        return len(b)

    def close(self):
        if not self.closed:
            try:
                self._chan.shutdown_write()  # the remote process reads end of file
            except Exception:
                pass
        super().close()


class _StderrText(io.TextIOWrapper):
    """The remote stderr; if the connection dropped, one last line says so."""

    def __init__(self, buffer, proc: SshProcess):
        super().__init__(buffer, encoding="utf-8", errors="replace")
        self._proc = proc
        self.started = False
        self.done = threading.Event()
        self._told = False

    def __next__(self):
        self.started = True
        try:
            return super().__next__()
        except StopIteration:
            if not self._told and self._proc._lost():
                self._told = True
                return f"ssh: the connection to {self._proc._device._dev()} was lost.\n"
            self.done.set()
            raise


class SshProcess:
    """A remote process on a paramiko channel, shaped like ``subprocess.Popen(text=True)``."""

    def __init__(self, device: SshDevice, chan, argv: list[str]):
        self._device = device
        self._chan = chan
        self._killed = False
        self.args = argv
        self.stdin = io.TextIOWrapper(io.BufferedWriter(_ChannelWriter(chan)), encoding="utf-8",
                                      line_buffering=True, write_through=True)
        self.stdout = io.TextIOWrapper(io.BufferedReader(_ChannelReader(chan, False)), encoding="utf-8",
                                       errors="replace")
        self.stderr = _StderrText(io.BufferedReader(_ChannelReader(chan, True)), self)
        self.pid: int | None = None
        chan.settimeout(device.connect_timeout)
        try:
            while True:  # login scripts may print before the wrapper reports the pid
                line = self.stdout.readline()
                if not line or line.startswith(_PID_LINE):
                    break
        except TimeoutError:
            chan.close()
            raise DeviceError(f"{device._dev()} did not start '{shlex.join(argv)[:120]}' within "
                              f"{device.connect_timeout:g} s.", "Check the device's load.") from None
        finally:
            chan.settimeout(None)
        if line:
            self.pid = _pid_of(line.encode())

    def _lost(self) -> bool:
        c = self._chan
        return c.closed and not self._killed and not c.eof_received and c.exit_status == -1

    def _code(self) -> int:
        if self._lost():
            if self.stderr.started:  # let the stderr reader deliver its last line first
                self.stderr.done.wait(1.0)
            return LOST_EXIT
        code = self._chan.exit_status
        return -signal.SIGKILL if code == -1 and self._killed else code

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        return self._code() if self._chan.status_event.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._chan.status_event.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._code()

    def kill(self) -> None:
        if self._chan.status_event.is_set():
            return
        self._killed = True
        if self.pid:
            self._device._kill_remote(self.pid)
        self._chan.close()

    terminate = kill

    def send_signal(self, sig: str) -> None:
        """Signal the remote process by name ("STOP", "CONT", "TERM"...)."""
        if self.pid:
            self._device._kill_remote(self.pid, sig)
