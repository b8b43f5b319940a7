"""TVM RPC servers and a tracker on 127.0.0.1 for the tests (free ports, stopped on exit)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ENV = {"TVM_USE_RUNTIME_LIB": "1", "TVM_FFI_DISABLE_TORCH_C_DLPACK": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_line(proc, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if text in line:
            return line
    raise RuntimeError(f"'{text}' not seen: {''.join(seen[-5:])}")


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _start(argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, **ENV), start_new_session=True)


def _stop(proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def rpc_server(tracker: tuple | None = None, key: str = ""):
    """A TVM RPC server on 127.0.0.1; yields its port."""
    port = free_port()
    argv = ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)]
    if tracker:
        argv += ["--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key]
    proc = _start(argv)
    try:
        _wait_for_line(proc, "bind to", 180)
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # its log never fills the pipe
        if tracker:
            time.sleep(2.0)  # registered with the tracker once bound
        yield port
    finally:
        _stop(proc)


@contextlib.contextmanager
def rpc_tracker():
    """A TVM RPC tracker on 127.0.0.1; yields (host, port)."""
    port = free_port()
    proc = _start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)])
    try:
        _wait_port(port, 180)
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield ("127.0.0.1", port)
    finally:
        _stop(proc)
