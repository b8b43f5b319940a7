"""A TVM RPC server as an edgekit device (devices.toml ``kind = "tvm-rpc"``).

A TVM RPC server (``python -m tvm.exec.rpc_server``, or TVM's Android RPC app) runs modules; it
runs no Python, so edgekit's runner stays on this host and the tvm runtime file, told where the
server is (``EDGEKIT_TVM_RPC``), uploads each module there, runs it there and times it there with
TVM's ``time_evaluator``. The device therefore runs only tvm artifacts, and its ``push``/``spawn``
are this host's. It is a backend's device kind because only this backend's runtime speaks to it.

    [devices.board-rpc]
    kind = "tvm-rpc"
    host = "192.168.1.60"          # a server to connect to directly ...
    port = 9090
    [devices.board-rpc.options]
    tracker = "192.168.1.2:9190"   # ... or a tracker, and the key the server registered with
    key = "rk3588"
    ssh = "board"                  # optional: edgekit starts the server on this SSH device (its Python
                                   # needs TVM: edgekit devices setup board --runtime tvm)
    arch = "aarch64"               # what the server runs on (default: this host's machine)
    mcpu = "cortex-a76"            # optional LLVM details for builds tuned on it (mtriple, mattr, cc)
    timeout = 600                  # RPC session timeout, seconds

Tuning on an SSH device that is not declared this way starts a server there the same way
(:func:`endpoint_for`), and connects to it directly.
"""
from __future__ import annotations

import contextlib
import json
import platform
import queue
import threading
import time
from dataclasses import dataclass

from ...core.errors import ConversionError, DeviceError, SpecError
from ...devices.base import DeviceInfo, LocalDevice

OPTIONS = {"tracker": str, "key": str, "ssh": str, "arch": str, "timeout": int, "server_port": int,
           "mtriple": str, "mcpu": str, "mattr": str, "cc": str}
SERVER_ENV = {"TVM_USE_RUNTIME_LIB": "1", "TVM_FFI_DISABLE_TORCH_C_DLPACK": "1"}


@dataclass(frozen=True)
class Endpoint:
    """Where a TVM RPC server is: directly (host, port) or through a tracker with a key."""

    host: str = ""
    port: int = 0
    tracker: tuple | None = None
    key: str = ""
    timeout: int = 600

    def describe(self) -> str:
        if self.tracker:
            return f"tracker {self.tracker[0]}:{self.tracker[1]}, key {self.key}"
        return f"server {self.host}:{self.port}"

    def runtime_config(self, arch: str) -> dict:
        cfg = {"timeout": self.timeout, "arch": arch}
        if self.tracker:
            cfg.update(tracker=list(self.tracker), key=self.key)
        else:
            cfg.update(host=self.host, port=self.port)
        return cfg


def _host_port(text: str, what: str) -> tuple:
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"{what} must be HOST:PORT, got '{text}'.")
    return host, int(port)


class TvmRpcDevice(LocalDevice):
    """Transport to a TVM RPC server: files stay on this host, the tvm runtime reaches the server."""

    kind = "tvm-rpc"
    runtimes = ("tvm",)

    def __init__(self, name: str, host: str = "", port: int = 0, options: dict | None = None,
                 labels: dict | None = None):
        super().__init__()
        self.name = name
        options = dict(options or {})
        self.check(name, host, port, options)
        self.host, self.port, self.options = host, int(port or 0), options
        self.arch = options.get("arch") or platform.machine()
        self.labels = {"via": "TVM RPC", **(labels or {})}
        self.llvm_options = {k: options[k] for k in ("mtriple", "mcpu", "mattr", "cc") if k in options}
        self.on_this_host = host in ("127.0.0.1", "localhost", "::1") and not options.get("ssh") \
            and not options.get("tracker") and self.arch == platform.machine()
        self._server = None  # (ssh device, process) when edgekit started the server
        self._endpoint: Endpoint | None = None

    @staticmethod
    def check(name: str, host: str, port: int, options: dict) -> None:
        for key, value in options.items():
            want = OPTIONS.get(key)
            if want is None:
                raise SpecError(f"device '{name}' (tvm-rpc): unknown option '{key}'.",
                                f"Options: {', '.join(sorted(OPTIONS))}.")
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise SpecError(f"device '{name}' (tvm-rpc): option '{key}' must be {want.__name__}.")
        if not options.get("tracker") and not options.get("ssh") and not (host and port):
            raise SpecError(f"device '{name}' (tvm-rpc) names no server.",
                            "Give host and port, or options.tracker and options.key, or options.ssh.")
        if options.get("tracker") and not options.get("key"):
            raise SpecError(f"device '{name}' (tvm-rpc) names a tracker but no key.", "Add options.key.")
        if options.get("tracker"):
            _host_port(options["tracker"], f"device '{name}' options.tracker")

    @classmethod
    def check_spec(cls, spec) -> None:
        cls.check(spec.name, spec.host, spec.port, dict(spec.options))

    @classmethod
    def from_spec(cls, spec):
        return cls(spec.name, spec.host, spec.port, dict(spec.options), dict(spec.labels))

    @classmethod
    def setup_device(cls, spec, runtimes, progress=print) -> dict:
        """Set up the SSH device the server is started on (it needs the tvm runtime)."""
        from ...devices.inventory import get_spec
        from ...devices.setup import SetupError, setup

        ssh = spec.options.get("ssh")
        if not ssh:
            raise SetupError(f"device '{spec.name}' is a TVM RPC server edgekit does not start: set it up where it "
                             "runs (pip install apache-tvm there, or install TVM's RPC app).")
        return setup(get_spec(ssh), runtimes, progress)

    def describe(self) -> DeviceInfo:
        return DeviceInfo(os="Linux", arch=self.arch, emulated=False, kind=self.kind)

    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            timeout = int(self.options.get("timeout", 600))
            tracker = _host_port(self.options["tracker"], f"device '{self.name}' options.tracker") \
                if self.options.get("tracker") else None
            if self.options.get("ssh"):
                self._endpoint = self._start_over_ssh(tracker, timeout)
            elif tracker:
                self._endpoint = Endpoint(tracker=tracker, key=self.options["key"], timeout=timeout)
            else:
                self._endpoint = Endpoint(self.host, self.port, timeout=timeout)
        return self._endpoint

    def _start_over_ssh(self, tracker, timeout) -> Endpoint:
        from ...devices.inventory import get_spec, open_device

        ssh = open_device(get_spec(self.options["ssh"]))
        try:
            proc, port = start_server(ssh, tracker, self.options.get("key", ""),
                                      int(self.options.get("server_port", 9090)))
        except BaseException:
            ssh.close()
            raise
        self._server = (ssh, proc)
        if tracker:
            return Endpoint(tracker=tracker, key=self.options["key"], timeout=timeout)
        return Endpoint(self.host or getattr(ssh, "host", ""), port, timeout=timeout)

    def spawn(self, argv, env=None):
        cfg = self.endpoint().runtime_config(self.arch)
        return super().spawn(argv, env={**(env or {}), "EDGEKIT_TVM_RPC": json.dumps(cfg)})

    def run(self, argv, timeout: float = 60.0):
        raise DeviceError(f"device '{self.name}' is a TVM RPC server: it runs TVM modules, not commands.")

    def close(self) -> None:
        if self._server is not None:
            ssh, proc = self._server
            self._server = None
            with contextlib.suppress(Exception):
                proc.kill()
            ssh.close()
        self._endpoint = None
        super().close()


def start_server(device, tracker=None, key: str = "", port: int = 9090, wait_s: float = 180.0):
    """Start ``python -m tvm.exec.rpc_server`` on ``device`` (an open device with a shell); returns
    (process, the port it bound)."""
    argv = ["sh", "-c", 'exec "$@" 2>&1', "sh", "{python}", "-m", "tvm.exec.rpc_server", "--host", "0.0.0.0",
            "--port", str(port), "--port-end", str(port + 100)]
    if tracker:
        argv += ["--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key]
    proc = device.spawn(argv, env=SERVER_ENV)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline, seen = time.monotonic() + wait_s, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            raise DeviceError(f"the TVM RPC server did not start on '{device.name}': "
                              f"{(seen or ['no output'])[-1].strip()[:200]}",
                              f"Its Python needs TVM: edgekit devices setup {device.name} --runtime tvm")
        seen.append(line)
        if "bind to" in line:
            bound = int(line.strip().rsplit(":", 1)[1])
            if tracker:  # registered once it has bound; give the tracker a moment to list it
                time.sleep(1.0)
            return proc, bound
    proc.kill()
    raise DeviceError(f"the TVM RPC server on '{device.name}' did not bind within {wait_s:.0f} s.")


@contextlib.contextmanager
def endpoint_for(edge: str, device):
    """The RPC endpoint that measures on ``device``: a tvm-rpc device's own, or a server started for
    the search on an SSH device (stopped afterwards)."""
    if isinstance(device, TvmRpcDevice):
        yield device.endpoint()
        return
    host = getattr(device, "host", "")
    if not host or not hasattr(device, "spawn"):
        raise ConversionError(edge, f"cannot measure on device '{device.name}' (kind {device.kind}): tuning "
                              "there needs a TVM RPC server.", "Declare it as a tvm-rpc device in devices.toml.")
    proc, port = start_server(device)
    try:
        yield Endpoint(host, port, timeout=600)
    finally:
        with contextlib.suppress(Exception):
            proc.kill()
