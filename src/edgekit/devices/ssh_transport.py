"""The layer under SSH devices: reading the OpenSSH config, the TCP connection, paramiko (the
``ssh`` extra) with a Transport that reports signal deaths as -SIGNUM, the post-login settle
step, and host-key checking. Nothing here knows SshDevice; messages get the device's names."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import socket
import threading
import warnings
from dataclasses import dataclass

from ..core.errors import DeviceError, MissingExtra


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


def _read_config(paramiko, name: str, host: str, path: str | None) -> dict:
    """The OpenSSH config's settings for ``host`` ({} without a config file)."""
    path = os.path.expanduser(path or "~/.ssh/config")
    if not os.path.isfile(path):
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(path).lookup(host))
    except Exception as e:
        raise DeviceError(f"SSH device '{name}': the OpenSSH config {path} could not be read ({e}).",
                          "Fix that file, or pass the settings in devices.toml.") from None


def _open_socket(name: str, dev: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to sshd with TCP_NODELAY set; failures say which step failed."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise DeviceError(f"SSH device '{name}': the host name '{host}' does not resolve.",
                          "Check host in devices.toml (or HostName in ~/.ssh/config).") from None
    except ConnectionRefusedError:
        raise DeviceError(f"{dev} refused the connection.",
                          "Check that sshd runs there and that the port is right.") from None
    except TimeoutError:
        raise DeviceError(f"{dev} did not answer within {timeout:g} s.",
                          "Check that the host is up and reachable, or raise connect_timeout.") from None
    except OSError as e:
        raise DeviceError(f"{dev} is unreachable ({e.strerror or e}).",
                          "Check the address and the network between here and there.") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


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


@dataclass(frozen=True)
class _HostKeyCheck:
    """Host-key checking for one device: loading known_hosts, the policy for keys not in it, and
    the advice the errors give."""

    name: str  # the device's name in devices.toml
    dev: str  # how messages name the device: "SSH device 'NAME' (user@host:port)"
    host: str
    port: int
    known_hosts: str

    def install(self, client, strict: bool) -> None:
        """Load the known keys into the paramiko ``client`` and set its missing-key policy."""
        if strict:
            for path in ("/etc/ssh/ssh_known_hosts", self.known_hosts):
                if os.path.isfile(path):
                    self._load(client.load_system_host_keys, path)
            client.set_missing_host_key_policy(_StrictPolicy(self))
        else:
            known = _paramiko().HostKeys()
            if os.path.isfile(self.known_hosts):
                self._load(known.load, self.known_hosts)
            client.set_missing_host_key_policy(_WarnPolicy(self, known))

    def _load(self, load, path: str) -> None:
        try:
            load(path)
        except Exception as e:
            raise DeviceError(f"SSH device '{self.name}': the known_hosts file {path} could not be read ({e}).",
                              "Fix or remove the bad line.") from None

    def _keyscan_cmd(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh-keyscan {port}{self.host} >> {self.known_hosts}"

    def unknown(self, key) -> DeviceError:
        return DeviceError(f"{self.dev} presented a host key ({_fingerprint(key)}) that is not in "
                           f"{self.known_hosts}.",
                           f"If you trust it, add it with: {self._keyscan_cmd()} (or set known_hosts, or "
                           f"strict_host_key_checking = false, for '{self.name}' in devices.toml).")

    def changed(self, key) -> DeviceError:
        known_name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return DeviceError(
            f"{self.dev} presented a host key ({_fingerprint(key)}) that differs from the one in "
            f"{self.known_hosts}, so it may not be the host you think.",
            f"If the device was reinstalled, remove the old key with: ssh-keygen -R '{known_name}' "
            f"-f {self.known_hosts}, then add the new one with: {self._keyscan_cmd()}.")


class _StrictPolicy:
    """Unknown host keys are refused with a DeviceError that says how to trust the key."""

    def __init__(self, check: _HostKeyCheck):
        self.check = check

    def missing_host_key(self, client, hostname, key):
        raise self.check.unknown(key)


class _WarnPolicy:
    """strict_host_key_checking = false: accept any key, but warn unless it matches ``known``
    (paramiko HostKeys loaded from known_hosts)."""

    def __init__(self, check: _HostKeyCheck, known):
        self.check, self.known = check, known

    def missing_host_key(self, client, hostname, key):
        entry = self.known.lookup(hostname)
        if entry is not None and entry.get(key.get_name()) == key:
            return
        state = "a CHANGED" if entry is not None else "an unknown"
        warnings.warn(f"{self.check.dev} presented {state} host key ({_fingerprint(key)}), accepted "
                      "because strict_host_key_checking is off.", stacklevel=2)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _why(e: Exception) -> str:
    return _one_line(str(e)) or type(e).__name__
