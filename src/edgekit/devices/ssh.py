"""SSH devices: a board or server reached over SSH (paramiko, the ``ssh`` extra).

One connection per device object, opened on first use (TCP_NODELAY set, host keys checked
against known_hosts unless ``strict_host_key_checking`` is off) and reopened once if it dropped
between commands. Files go over SFTP into a private remote work folder (``mktemp -d``) that
``close()`` removes. Every remote command is an argv list joined with ``shlex.join``; spawned
processes ``exec`` under a tiny ``sh`` wrapper that first reports their pid, so ``kill()``
reaches the remote process and not only the channel.

Settings come from keyword arguments first, then from the user's OpenSSH config
(``~/.ssh/config``: HostName, Port, User, IdentityFile, UserKnownHostsFile), then defaults.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import io
import logging
import os
import posixpath
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from pathlib import Path

from ..errors import DeviceError, MissingExtra, UserError
from .base import Device

# The remote side of every command: report the pid, enter the folder, then become the command
# (exec keeps the pid), so the process can be signalled by pid later.
_PID_MARK = "edgekit-pid"
_WRAPPER = (f'echo "{_PID_MARK} $$"; cd "$1" || exit 125; shift; '
            'export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3; exec "$@"')
LOST_EXIT = 255  # the exit code OpenSSH's client uses when the connection fails


def _paramiko():
    try:
        import paramiko
    except ImportError:
        raise MissingExtra("paramiko", "ssh", "An SSH device") from None
    log = logging.getLogger("paramiko")
    if not log.handlers:  # its transport thread logs tracebacks; without a handler they hit stderr
        log.addHandler(logging.NullHandler())
    return paramiko


_TRANSPORT = None


def _transport_class():
    """paramiko's Transport, but a remote process killed by a signal gets exit code -SIGNUM
    (as subprocess reports locally) instead of paramiko's -1: it ignores ``exit-signal``."""
    global _TRANSPORT
    if _TRANSPORT is None:
        paramiko = _paramiko()
        from paramiko.common import MSG_CHANNEL_REQUEST

        table = paramiko.Transport._channel_handler_table
        base = table[MSG_CHANNEL_REQUEST]

        def handle_request(chan, m):
            start = m.packet.tell()
            try:
                if m.get_text() == "exit-signal":
                    m.get_boolean()  # want-reply: always false for exit-signal (RFC 4254 6.10)
                    num = getattr(signal, "SIG" + m.get_text(), None)
                    chan.exit_status = -int(num) if num is not None else -1
                    chan.status_event.set()
                    return
            except Exception:
                pass
            m.packet.seek(start)
            base(chan, m)

        class _Transport(paramiko.Transport):
            _channel_handler_table = {**table, MSG_CHANNEL_REQUEST: handle_request}

            def __init__(self, *args, **kw):
                self.hostkeys_seen = threading.Event()
                super().__init__(*args, **kw)

            def _parse_global_request(self, m):
                start = m.packet.tell()
                if m.get_text().startswith("hostkeys-00@openssh.com"):
                    self.hostkeys_seen.set()
                m.packet.seek(start)
                return super()._parse_global_request(m)

        _TRANSPORT = _Transport
    return _TRANSPORT


def _settle(transport) -> None:
    """Right after login, OpenSSH sends a hostkeys notice that it holds back (Nagle) until our
    delayed ACK of the login reply: the first command would then wait ~40 ms. An ignore packet
    ACKs at once; waiting for the notice lets the next request ACK it in turn."""
    if "openssh" not in (transport.remote_version or "").lower():
        return
    try:
        transport.send_ignore(1)
        transport.hostkeys_seen.wait(0.1)
    except Exception:
        pass


def _fingerprint(key) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


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
        cfg = self._read_config(paramiko, name, host, ssh_config)
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
        self._workdir: str | None = None
        self._procs: list[SshProcess] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"SshDevice({self.name!r}, {self.user}@{self.host}:{self.port})"

    # ---- connection ---------------------------------------------------------------------------

    @staticmethod
    def _read_config(paramiko, name: str, host: str, path: str | None) -> dict:
        path = os.path.expanduser(path or "~/.ssh/config")
        if not os.path.isfile(path):
            return {}
        try:
            return dict(paramiko.SSHConfig.from_path(path).lookup(host))
        except Exception as e:
            raise DeviceError(f"SSH device '{name}': the OpenSSH config {path} could not be read ({e}).",
                              "Fix that file, or pass the settings in devices.toml.") from None

    def _addr(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def _dev(self) -> str:
        return f"SSH device '{self.name}' ({self._addr()})"

    def _keyscan_cmd(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh-keyscan {port}{self.host} >> {self.known_hosts}"

    def _keyscan_hint(self) -> str:
        return (f"If you trust it, add it with: {self._keyscan_cmd()} (or set known_hosts, or "
                f"strict_host_key_checking = false, for '{self.name}' in devices.toml).")

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
        try:
            sock = socket.create_connection((self.host, self.port), timeout=ct)
        except socket.gaierror:
            raise DeviceError(f"SSH device '{self.name}': the host name '{self.host}' does not resolve.",
                              "Check host in devices.toml (or HostName in ~/.ssh/config).") from None
        except ConnectionRefusedError:
            raise DeviceError(f"{dev} refused the connection.",
                              "Check that sshd runs there and that the port is right.") from None
        except (socket.timeout, TimeoutError):
            raise DeviceError(f"{dev} did not answer within {ct:g} s.",
                              "Check that the host is up and reachable, or raise connect_timeout.") from None
        except OSError as e:
            raise DeviceError(f"{dev} is unreachable ({e.strerror or e}).",
                              "Check the address and the network between here and there.") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        client = paramiko.SSHClient()
        if self.strict_host_key_checking:
            for path in ("/etc/ssh/ssh_known_hosts", self.known_hosts):
                if os.path.isfile(path):
                    self._load_host_keys(client.load_system_host_keys, path)
            client.set_missing_host_key_policy(_StrictPolicy(self))
        else:
            known = paramiko.HostKeys()
            if os.path.isfile(self.known_hosts):
                self._load_host_keys(known.load, self.known_hosts)
            client.set_missing_host_key_policy(_WarnPolicy(self, known))
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

    def _load_host_keys(self, load, path: str) -> None:
        try:
            load(path)
        except Exception as e:
            raise DeviceError(f"SSH device '{self.name}': the known_hosts file {path} could not be read ({e}).",
                              "Fix or remove the bad line.") from None

    def _connect_error(self, e: Exception, elapsed: float) -> DeviceError:
        paramiko = _paramiko()
        dev = self._dev()
        if isinstance(e, DeviceError):
            return e
        if isinstance(e, paramiko.BadHostKeyException):
            return DeviceError(
                f"{dev} presented a host key ({_fingerprint(e.key)}) that differs from the one in "
                f"{self.known_hosts}, so it may not be the host you think.",
                f"If the device was reinstalled, remove the old key with: ssh-keygen -R '{self._known_name()}' "
                f"-f {self.known_hosts}, then add the new one with: {self._keyscan_cmd()}.")
        if isinstance(e, paramiko.PasswordRequiredException):
            return DeviceError(f"{dev}: the key {self.identity_file or 'found'} is protected by a passphrase.",
                               "Load it into ssh-agent (ssh-add KEY) and leave identity_file unset.")
        if isinstance(e, paramiko.AuthenticationException):
            key = f"-i {self.identity_file} " if self.identity_file else ""
            return DeviceError(f"{dev} rejected the login of user '{self.user}' with {self._key_desc()}.",
                               f"Authorize the key there (ssh-copy-id {key}-p {self.port} {self.user}@{self.host}), "
                               f"or set user / identity_file for '{self.name}' in devices.toml.")
        text = " ".join(str(e).split())
        if isinstance(e, (socket.timeout, TimeoutError)) or (
                isinstance(e, paramiko.SSHException) and elapsed >= self.connect_timeout * 0.9):
            return DeviceError(f"{dev} accepted the connection but did not complete the SSH handshake within "
                               f"{self.connect_timeout:g} s.",
                               "Check that the port is sshd's, or raise connect_timeout.")
        if isinstance(e, (EOFError, ConnectionError)):
            return DeviceError(f"{dev} closed the connection during the SSH handshake.",
                               "Its sshd log says why (e.g. MaxStartups, AllowUsers, or a firewall).")
        return DeviceError(f"{dev}: the SSH handshake failed ({text or type(e).__name__}).",
                           "Try 'ssh -v' to the same address to see why.")

    def _known_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _conn(self):
        """The live client: connects on first use, and once more if the link dropped in between."""
        with self._lock:
            if self._client is not None:
                t = self._client.get_transport()
                if t is not None and t.is_active():
                    return self._client
                self._disconnect()
            self._client = self._connect()
            return self._client

    def _disconnect(self) -> None:
        with self._lock:
            sftp, client, self._sftp, self._client = self._sftp, self._client, None, None
            for thing in (sftp, client):
                try:
                    if thing is not None:
                        thing.close()
                except Exception:
                    pass

    def _channel(self, doing: str):
        paramiko = _paramiko()
        for attempt in (0, 1):
            client = self._conn()
            transport = client.get_transport()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as e:
                if attempt == 0 and not transport.is_active():
                    continue  # dropped between commands: reconnect once
                text = " ".join(str(e).split()) or type(e).__name__
                raise DeviceError(f"{self._dev()} would not open a session for {doing} ({text}).",
                                  "The server may limit sessions (MaxSessions in its sshd_config).") from None

    def _sftp_client(self):
        paramiko = _paramiko()
        with self._lock:
            t = self._client.get_transport() if self._client is not None else None
            if self._sftp is not None and not self._sftp.get_channel().closed and t is not None and t.is_active():
                return self._sftp
            self._sftp = None
            for attempt in (0, 1):
                client = self._conn()
                try:
                    self._sftp = client.open_sftp()
                    break
                except (paramiko.SSHException, EOFError, OSError) as e:
                    if attempt == 0 and not client.get_transport().is_active():
                        continue
                    raise DeviceError(f"{self._dev()} would not start SFTP ({' '.join(str(e).split())}).",
                                      "Enable the sftp subsystem in the device's sshd_config.") from None
            self._sftp.get_channel().settimeout(self.command_timeout)
            return self._sftp

    # ---- commands -----------------------------------------------------------------------------

    def _argv(self, argv) -> list[str]:
        if isinstance(argv, (str, bytes)):
            raise TypeError("SshDevice commands are argv lists, not shell strings")
        return [self.python() if a == "{python}" else str(a) for a in argv]

    def _start(self, argv: list[str], cwd: str, doing: str):
        chan = self._channel(doing)
        try:
            # exec: the login shell becomes the wrapper, so a signal death comes back as exit-signal
            chan.exec_command("exec " + shlex.join(["sh", "-c", _WRAPPER, "sh", cwd, *argv]))
        except Exception as e:
            chan.close()
            raise self._lost_or(e, doing) from None
        return chan

    def _lost_or(self, e: Exception, doing: str) -> DeviceError:
        t = self._client.get_transport() if self._client is not None else None
        if t is None or not t.is_active():
            return DeviceError(f"the connection to {self._dev()} dropped while {doing}.",
                               "Check the device and the network, then try again.")
        return DeviceError(f"{self._dev()} failed while {doing} ({' '.join(str(e).split()) or type(e).__name__}).")

    def run(self, argv: list[str], timeout: float | None = 60.0) -> tuple[int, str, str]:
        """Run ``argv`` in the work folder to completion: (exit code, stdout, stderr)."""
        return self._run(self._argv(argv), timeout, self.workdir())

    def _run(self, argv: list[str], timeout: float | None, cwd: str = "/") -> tuple[int, str, str]:
        timeout = self.command_timeout if timeout is None else float(timeout)
        cmd = shlex.join(argv)
        doing = f"running '{cmd[:120]}'"
        chan = self._start(argv, cwd, doing)
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                chan.settimeout(min(left, 0.05))  # wakes up to drain stderr on long runs
                try:
                    data = chan.recv(65536)
                except socket.timeout:
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
                raise socket.timeout
        except socket.timeout:
            pid = _pid_of(out)
            if pid:
                self._kill_remote(pid)
            chan.close()
            raise DeviceError(f"'{cmd[:120]}' did not finish within {timeout:g} s on SSH device '{self.name}'; "
                              "it was stopped.", "Raise the timeout if the command needs longer.") from None
        except DeviceError:
            raise
        except Exception as e:
            chan.close()
            raise self._lost_or(e, doing) from None
        code = chan.exit_status
        chan.close()
        if code == -1 and not chan.eof_received:
            raise self._lost_or(EOFError(), doing)
        text = _strip_pid(out)
        return code, text, err.decode("utf-8", "replace")

    def _kill_remote(self, pid: int, sig: str = "KILL") -> None:
        """Best effort: signal a remote pid over a fresh channel (the old one may be wedged)."""
        try:
            t = self._client.get_transport() if self._client is not None else None
            if t is None or not t.is_active():
                return
            chan = t.open_session(timeout=2)
            chan.exec_command(shlex.join(["kill", f"-{sig}", str(pid)]))
            chan.status_event.wait(2)
            chan.close()
        except Exception:
            pass

    def spawn(self, argv: list[str]) -> "SshProcess":
        """Start ``argv`` in the work folder with text pipes, like ``subprocess.Popen(text=True)``."""
        argv = self._argv(argv)
        cwd = self.workdir()
        chan = self._start(argv, cwd, f"starting '{shlex.join(argv)[:120]}'")
        proc = SshProcess(self, chan, argv)
        self._procs = [p for p in self._procs if p.poll() is None] + [proc]
        return proc

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
                    detail = " ".join(err.split())[:200] or f"exit code {code}"
                    raise DeviceError(f"{self._dev()} could not create a work folder in {self.remote_tmp} "
                                      f"({detail}).", "Point remote_tmp in devices.toml at a writable folder.")
                self._workdir = path
            return self._workdir

    def push(self, local: Path, name: str | None = None) -> str:
        """Upload ``local`` into the work folder (atomically: NAME.part, then rename); return its path."""
        local = Path(local)
        name = name or local.name
        try:
            size = local.stat().st_size
        except OSError as e:
            raise UserError(f"cannot push '{local}' to device '{self.name}': {e.strerror}.") from None
        remote = posixpath.join(self.workdir(), name)
        part = remote + ".part"
        sftp = self._sftp_client()
        try:
            with open(local, "rb") as f:
                sftp.putfo(f, part, file_size=size, confirm=True)
            try:
                sftp.posix_rename(part, remote)
            except IOError:  # servers without the posix-rename extension
                try:
                    sftp.remove(remote)
                except IOError:
                    pass
                sftp.rename(part, remote)
        except Exception as e:
            self._remove_quietly(part)
            raise self._transfer_error(e, f"pushing {local.name}", size) from None
        return remote

    def pull(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (through a temporary name beside it, then os.replace)."""
        local = Path(local)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
        sftp = self._sftp_client()
        try:
            sftp.get(remote, str(tmp))
            os.replace(tmp, local)
        except FileNotFoundError:
            raise DeviceError(f"SSH device '{self.name}' has no file {remote}.") from None
        except Exception as e:
            raise self._transfer_error(e, f"pulling {posixpath.basename(remote)}", None) from None
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass

    def _remove_quietly(self, remote: str) -> None:
        try:
            self._sftp.remove(remote)
            return
        except Exception:
            pass
        try:
            self._run(["rm", "-f", "--", remote], 10)
        except Exception:
            pass

    def _transfer_error(self, e: Exception, doing: str, size: int | None) -> DeviceError:
        if isinstance(e, DeviceError):
            return e
        t = self._client.get_transport() if self._client is not None else None
        if t is None or not t.is_active():
            return self._lost_or(e, doing)
        if isinstance(e, (socket.timeout, TimeoutError)):
            return DeviceError(f"{doing} to SSH device '{self.name}' stalled for {self.command_timeout:g} s.",
                               "Check the network, or raise command_timeout.")
        if size is not None and self._workdir:
            free = self._free_kb(self._workdir)
            if free is not None and free * 1024 < size + 64 * 1024:
                return DeviceError(f"{doing} to SSH device '{self.name}' failed: remote disk full in "
                                   f"{self.remote_tmp} ({free} KB free, {size // 1024 + 1} KB needed).",
                                   "Free space on the device, or point remote_tmp in devices.toml at a larger "
                                   "file system.")
        text = " ".join(str(e).split()) or type(e).__name__
        return DeviceError(f"{doing} on SSH device '{self.name}' failed ({text}).")

    def _free_kb(self, path: str) -> int | None:
        try:
            code, out, _ = self._run(["df", "-Pk", "--", path], 10)
            return int(out.strip().splitlines()[-1].split()[3]) if code == 0 else None
        except Exception:
            return None

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


class _StrictPolicy:
    """Unknown host keys are refused with a DeviceError that says how to trust the key."""

    def __init__(self, device: SshDevice):
        self.device = device

    def missing_host_key(self, client, hostname, key):
        d = self.device
        raise DeviceError(f"{d._dev()} presented a host key ({_fingerprint(key)}) that is not in "
                          f"{d.known_hosts}.", d._keyscan_hint())


class _WarnPolicy:
    """strict_host_key_checking = false: accept any key, but warn unless it matches known_hosts."""

    def __init__(self, device: SshDevice, known):
        self.device, self.known = device, known

    def missing_host_key(self, client, hostname, key):
        entry = self.known.lookup(hostname)
        if entry is not None and entry.get(key.get_name()) == key:
            return
        state = "a CHANGED" if entry is not None else "an unknown"
        warnings.warn(f"{self.device._dev()} presented {state} host key ({_fingerprint(key)}), accepted "
                      "because strict_host_key_checking is off.", stacklevel=2)


def _pid_of(out: bytes) -> int | None:
    for line in bytes(out).decode("utf-8", "replace").splitlines():
        if line.startswith(_PID_MARK + " "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _strip_pid(out: bytes) -> str:
    """Drop everything up to and including the pid line (login scripts may print before it)."""
    text = bytes(out).decode("utf-8", "replace")
    mark = text.find(_PID_MARK + " ")
    if mark < 0:
        return text
    end = text.find("\n", mark)
    return "" if end < 0 else text[end + 1:]


class _ChannelReader(io.RawIOBase):
    def __init__(self, chan, stderr: bool):
        self._recv = chan.recv_stderr if stderr else chan.recv

    def readable(self):
        return True

    def readinto(self, b):
        try:
            data = self._recv(len(b))
        except (socket.timeout, TimeoutError):
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

    def __init__(self, buffer, proc: "SshProcess"):
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
                if not line or line.startswith(_PID_MARK + " "):
                    break
        except (socket.timeout, TimeoutError):
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
