"""SSH devices: a board or server reached over SSH (paramiko, the ``ssh`` extra).

One connection per device object, opened on first use (TCP_NODELAY set, host keys checked
against known_hosts unless ``strict_host_key_checking`` is off) and reopened once if it dropped
between commands. Files and folders go over SFTP (``ssh_files``) into a private remote work
folder (``mktemp -d``) that ``close()`` removes. Every remote command is an argv list joined with
``shlex.join``; spawned processes ``exec`` under a tiny ``sh`` wrapper that first reports their
pid, so ``kill()`` reaches the remote process and not only the channel (see ``ssh_process``),
and exports the caller's environment variables, passed as quoted arguments.

Settings come from keyword arguments first, then from the user's OpenSSH config
(``~/.ssh/config``: HostName, Port, User, IdentityFile, UserKnownHostsFile), then defaults.
"""
from __future__ import annotations

import getpass
import os
import shlex
import threading
import time
from pathlib import Path

from ..core.errors import DeviceError
from . import ssh_files
from .base import Device, DeviceInfo, spawn_env
from .ssh_process import LOST_EXIT, SshProcess, _drain, _pid_of, _strip_pid, _wrapped
from .ssh_transport import (_HostKeyCheck, _one_line, _open_socket, _paramiko, _read_config, _settle,
                            _transport_class, _why)

__all__ = ["LOST_EXIT", "SshDevice", "SshProcess"]


class SshDevice(Device):
    """A device reached over SSH. Nothing connects until the first command or transfer."""

    kind = "ssh"
    emulated = False

    def __init__(self, name: str, host: str, port: int | None = None, user: str | None = None,
                 identity_file: str | None = None, known_hosts: str | None = None, python: str | None = None,
                 strict_host_key_checking: bool = True, connect_timeout: float = 10.0,
                 command_timeout: float = 600.0, labels: dict | None = None, remote_tmp: str = "/tmp",
                 ssh_config: str | None = None):
        paramiko = _paramiko()
        self.name = name
        self.labels = dict(labels or {})
        cfg = _read_config(paramiko, name, host, ssh_config)
        self.host = cfg.get("hostname") or host
        self.port = int(port if port is not None else cfg.get("port", 22))
        self.user = user or cfg.get("user") or getpass.getuser()
        self.identity_file = os.path.expanduser(identity_file) if identity_file else None
        # IdentityFile entries that do not exist are skipped, as OpenSSH does
        self._config_keys = [p for p in (os.path.expanduser(k) for k in cfg.get("identityfile", []))
                             if os.path.exists(p)]
        kh = known_hosts or (cfg.get("userknownhostsfile") or "").split(" ")[0] or "~/.ssh/known_hosts"
        self.known_hosts = os.path.expanduser(kh)
        self.strict_host_key_checking = bool(strict_host_key_checking)
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.remote_tmp = remote_tmp.rstrip("/") or "/"
        self.connect_s: float | None = None  # how long the last connect took
        self._python = python
        self._client = None
        self._sftp = None
        self._info: DeviceInfo | None = None  # describe(), for the current connection
        self._workdir: str | None = None
        self._procs: list[SshProcess] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"SshDevice({self.name!r}, {self.user}@{self.host}:{self.port})"

    # ---- connection ---------------------------------------------------------------------------

    def _dev(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"SSH device '{self.name}' ({self.user}@{host}:{self.port})"

    def _host_keys(self) -> _HostKeyCheck:
        return _HostKeyCheck(self.name, self._dev(), self.host, self.port, self.known_hosts)

    def _key_desc(self) -> str:
        if self.identity_file:
            return f"key {self.identity_file}"
        keys = ", ".join(self._config_keys)
        return (f"keys {keys}, the ssh-agent and ~/.ssh/id_*" if keys else "the ssh-agent and ~/.ssh/id_* keys")

    def _connect(self):
        paramiko = _paramiko()
        t0 = time.perf_counter()
        dev, ct = self._dev(), self.connect_timeout
        if self.identity_file and not os.path.isfile(self.identity_file):
            raise DeviceError(f"{dev}: the identity file {self.identity_file} does not exist.",
                              "Fix identity_file in devices.toml.")
        sock = _open_socket(self.name, dev, self.host, self.port, ct)
        client = paramiko.SSHClient()
        self._host_keys().install(client, self.strict_host_key_checking)
        explicit = self.identity_file is not None
        try:
            client.connect(self.host, port=self.port, username=self.user, sock=sock,
                           key_filename=[self.identity_file] if explicit else (self._config_keys or None),
                           look_for_keys=not explicit, allow_agent=not explicit, timeout=ct, banner_timeout=ct,
                           auth_timeout=ct, channel_timeout=ct, transport_factory=_transport_class())
        except Exception as e:
            client.close()
            sock.close()
            raise self._connect_error(e, time.perf_counter() - t0) from None
        transport = client.get_transport()
        transport.set_keepalive(30)
        _settle(transport)
        self.connect_s = time.perf_counter() - t0
        return client

    def _connect_error(self, e: Exception, elapsed: float) -> DeviceError:
        paramiko = _paramiko()
        dev = self._dev()
        if isinstance(e, DeviceError):
            return e
        if isinstance(e, paramiko.BadHostKeyException):
            return self._host_keys().changed(e.key)
        if isinstance(e, paramiko.PasswordRequiredException):
            return DeviceError(f"{dev}: the key {self.identity_file or 'found'} is protected by a passphrase.",
                               "Load it into ssh-agent (ssh-add KEY) and leave identity_file unset.")
        if isinstance(e, paramiko.AuthenticationException):
            key = f"-i {self.identity_file} " if self.identity_file else ""
            return DeviceError(f"{dev} rejected the login of user '{self.user}' with {self._key_desc()}.",
                               f"Authorize the key there (ssh-copy-id {key}-p {self.port} {self.user}@{self.host}), "
                               f"or set user / identity_file for '{self.name}' in devices.toml.")
        if isinstance(e, TimeoutError) or (
                isinstance(e, paramiko.SSHException) and elapsed >= self.connect_timeout * 0.9):
            return DeviceError(f"{dev} accepted the connection but did not complete the SSH handshake within "
                               f"{self.connect_timeout:g} s.",
                               "Check that the port is sshd's, or raise connect_timeout.")
        if isinstance(e, (EOFError, ConnectionError)):
            return DeviceError(f"{dev} closed the connection during the SSH handshake.",
                               "Its sshd log says why (e.g. MaxStartups, AllowUsers, or a firewall).")
        return DeviceError(f"{dev}: the SSH handshake failed ({_why(e)}).",
                           "Try 'ssh -v' to the same address to see why.")

    def _conn(self):
        """The live client: connects on first use, and once more if the link dropped in between."""
        with self._lock:
            if self._live_transport() is None:
                self._disconnect()
                self._client = self._connect()
            return self._client

    def _live_transport(self):
        """The connection's transport if it is up, else None (never connects)."""
        t = self._client.get_transport() if self._client is not None else None
        return t if t is not None and t.is_active() else None

    def _disconnect(self) -> None:
        with self._lock:
            sftp, client, self._sftp, self._client = self._sftp, self._client, None, None
            self._info = None
            for thing in (sftp, client):
                try:
                    if thing is not None:
                        thing.close()
                except Exception:
                    pass

    def _open(self, open_, failed):
        """``open_(client)`` on the live connection; if that fails because the link had dropped
        between commands, reconnect once and retry. Other failures raise ``failed(error)``."""
        paramiko = _paramiko()
        for attempt in (0, 1):
            client = self._conn()
            transport = client.get_transport()
            try:
                return open_(client)
            except (paramiko.SSHException, EOFError, OSError) as e:
                if attempt == 0 and not transport.is_active():
                    continue
                raise failed(e) from None

    def _channel(self, doing: str):
        return self._open(
            lambda client: client.get_transport().open_session(timeout=self.connect_timeout),
            lambda e: DeviceError(f"{self._dev()} would not open a session for {doing} ({_why(e)}).",
                                  "The server may limit sessions (MaxSessions in its sshd_config)."))

    def _sftp_client(self):
        with self._lock:
            if self._sftp is not None and not self._sftp.get_channel().closed and self._live_transport() is not None:
                return self._sftp
            self._sftp = None  # dropped even if a new one cannot start
            self._sftp = self._open(
                lambda client: client.open_sftp(),
                lambda e: DeviceError(f"{self._dev()} would not start SFTP ({_one_line(str(e))}).",
                                      "Enable the sftp subsystem in the device's sshd_config."))
            self._sftp.get_channel().settimeout(self.command_timeout)
            return self._sftp

    # ---- commands -----------------------------------------------------------------------------

    def _argv(self, argv) -> list[str]:
        if isinstance(argv, (str, bytes)):
            raise TypeError("SshDevice commands are argv lists, not shell strings")
        return [self.python() if a == "{python}" else str(a) for a in argv]

    def _start(self, argv: list[str], cwd: str, doing: str, env: dict | None = None):
        command = _wrapped(cwd, argv, spawn_env(env))
        chan = self._channel(doing)
        try:
            # exec: the login shell becomes the wrapper, so a signal death comes back as exit-signal
            chan.exec_command(command)
        except Exception as e:
            chan.close()
            raise self._lost_or(e, doing) from None
        return chan

    def _lost_or(self, e: Exception, doing: str) -> DeviceError:
        if self._live_transport() is None:
            return DeviceError(f"the connection to {self._dev()} dropped while {doing}.",
                               "Check the device and the network, then try again.")
        return DeviceError(f"{self._dev()} failed while {doing} ({_why(e)}).")

    def run(self, argv: list[str], timeout: float | None = 60.0) -> tuple[int, str, str]:
        """Run ``argv`` in the work folder to completion: (exit code, stdout, stderr)."""
        return self._run(self._argv(argv), timeout, self.workdir())

    def _run(self, argv: list[str], timeout: float | None, cwd: str = "/") -> tuple[int, str, str]:
        timeout = self.command_timeout if timeout is None else float(timeout)
        cmd = shlex.join(argv)
        doing = f"running '{cmd[:120]}'"
        chan = self._start(argv, cwd, doing)
        out, err = bytearray(), bytearray()
        try:
            _drain(chan, out, err, time.monotonic() + timeout)
        except TimeoutError:
            pid = _pid_of(out)
            if pid:
                self._kill_remote(pid)
            chan.close()
            raise DeviceError(f"'{cmd[:120]}' did not finish within {timeout:g} s on SSH device '{self.name}'; "
                              "it was stopped.", "Raise the timeout if the command needs longer.") from None
        except Exception as e:
            chan.close()
            raise self._lost_or(e, doing) from None
        code = chan.exit_status
        chan.close()
        if code == -1 and not chan.eof_received:
            raise self._lost_or(EOFError(), doing)
        return code, _strip_pid(out), err.decode("utf-8", "replace")

    def _kill_remote(self, pid: int, sig: str = "KILL") -> None:
        """Best effort: signal a remote pid over a fresh channel (the old one may be wedged)."""
        try:
            t = self._live_transport()
            if t is None:
                return
            chan = t.open_session(timeout=2)
            chan.exec_command(shlex.join(["kill", f"-{sig}", str(pid)]))
            chan.status_event.wait(2)
            chan.close()
        except Exception:
            pass

    def spawn(self, argv: list[str], env: dict | None = None) -> SshProcess:
        """Start ``argv`` in the work folder with text pipes, like ``subprocess.Popen(text=True)``;
        ``env`` adds environment variables (passed as quoted arguments, never spliced into a shell)."""
        argv = self._argv(argv)
        cwd = self.workdir()
        chan = self._start(argv, cwd, f"starting '{shlex.join(argv)[:120]}'", env)
        proc = SshProcess(self, chan, argv)
        self._procs = [p for p in self._procs if p.poll() is None] + [proc]
        return proc

    def describe(self) -> DeviceInfo:
        """What the device is, asked of it (``uname -s -m``) once per connection."""
        with self._lock:
            if self._info is None:
                code, out, err = self._run(["uname", "-s", "-m"], min(self.command_timeout, 60.0))
                words = out.split()
                if code != 0 or len(words) < 2:
                    detail = _one_line(err)[:200] or f"exit code {code}"
                    raise DeviceError(f"{self._dev()} did not say what it is ('uname -s -m' failed: {detail}).")
                info = DeviceInfo(os=" ".join(words[:-1]), arch=words[-1], emulated=self.emulated, kind=self.kind)
                if self._live_transport() is not None:
                    self._info = info
                return info
            return self._info

    def python(self) -> str:
        if self._python is None:
            code, out, _ = self._run(["sh", "-c", 'p="$HOME/.edgekit/venv/bin/python"; '
                                      'if [ -x "$p" ]; then echo "$p"; else echo python3; fi'],
                                     min(self.command_timeout, 60.0))
            lines = out.strip().splitlines()
            self._python = lines[-1] if code == 0 and lines else "python3"
        return self._python

    # ---- files --------------------------------------------------------------------------------

    def workdir(self) -> str:
        with self._lock:
            if self._workdir is None:
                code, out, err = self._run(["mktemp", "-d", f"{self.remote_tmp}/edgekit-XXXXXX"],
                                           min(self.command_timeout, 60.0))
                path = out.strip().splitlines()[-1] if out.strip() else ""
                if code != 0 or not path.startswith("/"):
                    detail = _one_line(err)[:200] or f"exit code {code}"
                    raise DeviceError(f"{self._dev()} could not create a work folder in {self.remote_tmp} "
                                      f"({detail}).", "Point remote_tmp in devices.toml at a writable folder.")
                self._workdir = path
            return self._workdir

    def push(self, local: Path, name: str | None = None) -> str:
        """Upload the file or folder ``local`` into the work folder (atomically: NAME.part, then
        rename), keeping mode bits; return its path there."""
        return ssh_files.push(self, local, name)

    def pull(self, remote: str, local: Path) -> None:
        """Download the file or folder ``remote`` to ``local`` (built beside it, then swapped in)."""
        ssh_files.pull(self, remote, local)

    # ---- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop spawned processes, remove the work folder (reconnecting once if needed), disconnect."""
        with self._lock:
            try:
                orphans = []
                for proc in self._procs:
                    if proc.poll() is None:
                        proc.kill()
                    elif proc._lost() and proc.pid:
                        orphans.append(proc.pid)  # its connection dropped: it may still run there
                if (self._workdir is not None or orphans) and self._client is not None:
                    self._conn()  # reconnects once if the link dropped
                    for pid in orphans:
                        self._kill_remote(pid)
                    if self._workdir is not None:
                        self._run(["rm", "-rf", "--", self._workdir], min(self.command_timeout, 30.0))
            except Exception:
                pass  # best effort: the device may be gone
            finally:
                self._procs = []
                self._workdir = None
                self._disconnect()
