"""A throwaway SSH test host: Debian's real OpenSSH sshd, with its own host key, client key,
user, and (where the kernel allows) its own network namespace, address and mount namespace.

    with sshd_host() as host:                 # or: sshd = sshd_fixture("module") in a test module
                                              # (EDGEKIT_TEST_SSHD_NETNS=0: loopback, no netns)
        dev = host.device("testhost")          # an SshDevice pointed at it, host key trusted
        ...

Layout (as root):
  * network namespace ``edgekit-XXXXXX`` with a veth pair 10.231.N.1/30 (here) <-> 10.231.N.2/30
    (there); sshd listens on 10.231.N.2:22. Without netns it listens on 127.0.0.1:<free port>.
  * sshd runs in a private mount namespace (``unshare -m``): its /tmp is the fixture folder's
    ``rtmp`` (so leftovers are visible here), ``/tmp/small`` is a 1 MB tmpfs (disk-full tests),
    the test user's home is a fresh folder, and any folder on the way to this Python that other
    users may not enter (``/root`` with pyenv) is replaced by a tmpfs holding only a bind of the
    part needed. The host's permissions are never changed.
  * user ``edgekit-test`` (created once with useradd, unlocked with ``usermod -p '*'``), key-only
    login, ``UsePAM no``, ``StrictModes no``, MaxSessions/MaxStartups 50.
Teardown kills every process in the namespaces, deletes the netns and the folder, also on failure.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
APT_PACKAGES = ["openssh-server", "openssh-client", "iproute2"]  # sshd, ssh-keygen, ip
TEST_USER = "edgekit-test"
TEST_HOME = f"/home/{TEST_USER}"


class HostUnavailable(RuntimeError):
    """The machine cannot host a test sshd (not root, no sshd); tests skip with this reason."""


def _sh(argv, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({p.returncode}): {p.stderr.strip()[:300]}")
    return p


def ensure_sshd() -> None:
    if os.path.exists(SSHD) and shutil.which("ssh-keygen"):
        return
    if os.geteuid() != 0:
        raise HostUnavailable(f"{SSHD} is missing and only root can install {' '.join(APT_PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    if _sh(install, check=False, env=env).returncode != 0:
        _sh(["apt-get", "update", "-q"], check=False, env=env)
        _sh(install, check=False, env=env)
    if not os.path.exists(SSHD):
        raise HostUnavailable(f"could not install {' '.join(APT_PACKAGES)} with apt-get")


def ensure_user() -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        _sh(["useradd", "--create-home", "--home-dir", TEST_HOME, "--shell", "/bin/sh",
             "--comment", "edgekit SSH tests", TEST_USER])
        pw = pwd.getpwnam(TEST_USER)
    shadow = _sh(["getent", "shadow", TEST_USER], check=False).stdout.split(":")
    if len(shadow) < 2 or shadow[1].startswith("!"):  # locked: sshd refuses it even for keys
        _sh(["usermod", "-p", "*", TEST_USER])
    os.makedirs(pw.pw_dir, exist_ok=True)
    return pw


def _blocked_dirs(paths) -> dict[str, set[str]]:
    """{folder others may not enter: {its children on the way to ``paths``}}."""
    out: dict[str, set[str]] = {}
    for p in paths:
        parts = Path(p).parts
        for i in range(1, len(parts) - 1):
            d = os.path.join(*parts[:i + 1])
            if not os.stat(d).st_mode & 0o001:
                out.setdefault(d, set()).add(parts[i + 1])
                break
    return out


def _python_paths() -> list[str]:
    paths, p = [], sys.executable
    for _ in range(10):  # every hop of the symlink chain must be reachable
        paths.append(p)
        if not os.path.islink(p):
            break
        p = os.path.join(os.path.dirname(p), os.readlink(p))
    return paths + [sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)]


@dataclass
class SshdHost:
    dir: Path
    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    python: str  # this test run's Python, usable by the test user there
    netns: str | None = None
    private_mounts: bool = False
    small_tmp: str | None = None  # a 1 MB tmpfs, as the remote sees it
    proc: subprocess.Popen | None = None
    timings: dict = field(default_factory=dict)
    _veth: str | None = None

    # ---- client side -----------------------------------------------------------------------
    def device(self, name: str = "testhost", **kw):
        from edgekit.devices.ssh import SshDevice

        args = dict(host=self.host, port=self.port, user=self.user, identity_file=self.identity_file,
                    known_hosts=self.known_hosts, python=self.python, connect_timeout=5.0,
                    ssh_config=str(self.dir / "no-ssh-config"))
        args.update(kw)
        return SshDevice(name, **args)

    def devices_toml(self, name: str = "test-host", python: bool = True, labels: dict | None = None) -> str:
        """A devices.toml table for an SSH device pointed at this host (host key trusted). ``python``:
        this test run's Python (else the device's own: ~/.edgekit/venv's or python3)."""
        lines = [f"[devices.{name}]", 'kind = "ssh"', f'host = "{self.host}"', f"port = {self.port}",
                 f'user = "{self.user}"', f'identity_file = "{self.identity_file}"',
                 f'known_hosts = "{self.known_hosts}"']
        if python:
            lines.append(f'python = "{self.python}"')
        if labels:
            lines.append("labels = { " + ", ".join(f'{k} = "{v}"' for k, v in labels.items()) + " }")
        return "\n".join(lines) + "\n"

    def keygen(self, name: str) -> Path:
        """A fresh ed25519 key pair in the fixture folder (private key path returned)."""
        path = self.dir / name
        if not path.exists():
            _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)])
        return path

    def known_hosts_line(self, pubkey_file: Path | None = None) -> str:
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        kind, b64 = (pubkey_file or self.dir / "host_key.pub").read_text().split()[:2]
        return f"{name} {kind} {b64}\n"

    # ---- server side -----------------------------------------------------------------------
    def remote_path(self, path: str) -> Path:
        """``path`` as the test host sees it (through its mount namespace), readable from here."""
        return Path(f"/proc/{self.proc.pid}/root") / path.lstrip("/")

    def leftovers(self, base: str = "/tmp") -> list[str]:
        """Work folders the test user (so SshDevice) left on the test host under ``base``."""
        root = self.remote_path(base)
        uid = pwd.getpwnam(self.user).pw_uid
        return sorted(p.name for p in root.glob("edgekit-*") if p.stat().st_uid == uid) if root.exists() else []

    def connection_pids(self) -> list[int]:
        """The sshd processes serving connections (children of the listener and theirs)."""
        kids = _children(self.proc.pid)
        return kids + [g for k in kids for g in _children(k) if _comm(g) == "sshd"]

    def drop_connections(self) -> int:
        """Kill the sshd processes serving every connection, as a crash or a reboot would."""
        pids = self.connection_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    @contextlib.contextmanager
    def blackhole(self):
        """Every packet from here to the test host vanishes (netns only): a tbf qdisc whose burst
        fits no packet (this kernel has no netem and no tc classifiers)."""
        if not self._veth:
            raise HostUnavailable("blackhole needs the network namespace")
        _sh(["tc", "qdisc", "add", "dev", self._veth, "root", "tbf", "rate", "8kbit", "burst", "1", "limit", "1"])
        try:
            yield
        finally:
            _sh(["tc", "qdisc", "del", "dev", self._veth, "root"], check=False)

    def user_pids(self) -> list[int]:
        uid = pwd.getpwnam(self.user).pw_uid
        return [p for p in self._namespace_pids() if _uid(p) == uid]

    def _namespace_pids(self) -> list[int]:
        kind = "mnt" if self.private_mounts else ("net" if self.netns else None)
        if kind is None:
            return _descendants(self.proc.pid)
        ref = os.readlink(f"/proc/{self.proc.pid}/ns/{kind}")
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{d}/ns/{kind}") == ref:
                        pids.append(int(d))
        return pids

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # leaves first, so every parent reaps its children (no zombies handed to init)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                pids = set(self._namespace_pids_safe()) - {self.proc.pid}
                if not pids:
                    break
                leaves = [p for p in pids if not set(_children(p)) & pids]
                for pid in leaves or pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                gone = time.monotonic() + 0.5
                while time.monotonic() < gone and any(os.path.exists(f"/proc/{p}") for p in leaves):
                    time.sleep(0.005)
            for _ in range(3):
                pids = self._namespace_pids() + [self.proc.pid]
                for pid in set(pids):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
                if self.proc.poll() is not None and not self._namespace_pids_safe():
                    break
        if self.netns:
            _sh(["ip", "netns", "del", self.netns], check=False)
            self.netns = None
        if self._veth:
            _sh(["ip", "link", "del", self._veth], check=False)  # normally gone with the netns
            self._veth = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _namespace_pids_safe(self) -> list[int]:
        try:
            return self._namespace_pids()
        except OSError:
            return []


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_subnet() -> int:
    used = _sh(["ip", "-o", "-4", "addr"], check=False).stdout
    for _ in range(200):
        n = secrets.randbelow(250) + 1
        if f"10.231.{n}." not in used:
            return n
    raise RuntimeError("no free 10.231.N.0/30 subnet")


def _make_netns(host: SshdHost) -> bool:
    """A netns with a veth pair; False (and nothing left behind) if the kernel or rights refuse."""
    tag = secrets.token_hex(3)
    ns, here, there = f"edgekit-{tag}", f"ek{tag}h", f"ek{tag}n"
    n = _free_subnet()
    steps = [["ip", "netns", "add", ns],
             ["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns],
             ["ip", "addr", "add", f"10.231.{n}.1/30", "dev", here],
             ["ip", "link", "set", here, "up"],
             ["ip", "-n", ns, "addr", "add", f"10.231.{n}.2/30", "dev", there],
             ["ip", "-n", ns, "link", "set", there, "up"],
             ["ip", "-n", ns, "link", "set", "lo", "up"]]
    for i, argv in enumerate(steps):
        if _sh(argv, check=False).returncode != 0:
            if i >= 1:
                _sh(["ip", "netns", "del", ns], check=False)
            if i >= 2:
                _sh(["ip", "link", "del", here], check=False)
            return False
        if i == 0:
            host.netns = ns
        if i == 1:
            host._veth = here
    host.host, host.port = f"10.231.{n}.2", 22
    return True


def _mount_script(host: SshdHost, home: str) -> str:
    """Shell run inside the new mount namespace before exec'ing sshd."""
    d = host.dir
    lines = ["set -e"]
    stash = 0
    for blocked, children in sorted(_blocked_dirs(_python_paths()).items()):
        binds = []
        for child in sorted(children):
            s = d / "stash" / str(stash)
            stash += 1
            s.mkdir(parents=True)
            lines.append(f"mount --bind {shlex.quote(os.path.join(blocked, child))} {shlex.quote(str(s))}")
            binds.append((s, os.path.join(blocked, child)))
        lines.append(f"mount -t tmpfs -o mode=755,size=64k edgekit-mask {shlex.quote(blocked)}")
        for s, target in binds:
            lines.append(f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(str(s))} {shlex.quote(target)}")
    lines.append(f"mount --bind {shlex.quote(str(d / 'home'))} {shlex.quote(home)}")
    # the host gets a private /tmp; a Python that lives under /tmp (a checkout there) is bound back in
    keep = sorted({Path(p).parts[2] for p in _python_paths() if len(Path(p).parts) > 2 and Path(p).parts[1] == "tmp"})
    kept = []
    for child in keep:
        s = d / "stash" / str(stash)
        stash += 1
        s.mkdir(parents=True)
        lines.append(f"mount --bind {shlex.quote(os.path.join('/tmp', child))} {shlex.quote(str(s))}")
        kept.append((s, os.path.join("/tmp", child)))
    lines.append(f"mount --bind {shlex.quote(str(d / 'rtmp'))} /tmp")
    for s, target in kept:
        lines.append(f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(str(s))} {shlex.quote(target)}")
    lines.append("mount -t tmpfs -o size=1m,mode=1777 edgekit-small /tmp/small")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def sshd_host(netns: bool = True):
    """Start a throwaway sshd test host; stop and remove everything on exit."""
    if os.geteuid() != 0:
        raise HostUnavailable("the sshd test host needs root (useradd, network and mount namespaces)")
    ensure_sshd()
    t0 = time.perf_counter()
    pw = ensure_user()
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None  # not /tmp: the host gets a private /tmp
    d = Path(tempfile.mkdtemp(prefix="edgekit-sshd-", dir=base))
    d.chmod(0o755)
    host = SshdHost(dir=d, host="127.0.0.1", port=0, user=TEST_USER, identity_file=str(d / "client_key"),
                    known_hosts=str(d / "known_hosts"), python=sys.executable)
    try:
        for sub, mode in (("home", 0o755), ("rtmp", 0o1777), ("rtmp/small", 0o1777)):
            (d / sub).mkdir()
            (d / sub).chmod(mode)
        os.chown(d / "home", pw.pw_uid, pw.pw_gid)
        # ~/.edgekit/venv/bin/python there: what SshDevice.python() looks for first
        venv_bin = d / "home" / ".edgekit" / "venv" / "bin"
        venv_bin.mkdir(parents=True)
        (venv_bin / "python").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        (venv_bin / "python").chmod(0o755)
        for p in (venv_bin.parents[1], venv_bin.parent, venv_bin, venv_bin / "python"):  # the user's own, as on a board
            os.chown(p, pw.pw_uid, pw.pw_gid)
        _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-test-host", "-f", str(d / "host_key")])
        host.keygen("client_key")
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        (d / "authorized_keys").chmod(0o644)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder

        if not (netns and _make_netns(host)):
            host.host, host.port = "127.0.0.1", _free_port()
        host.private_mounts = _sh(["unshare", "-m", "--propagation", "private", "true"], check=False).returncode == 0
        if host.private_mounts:
            host.small_tmp = "/tmp/small"
        elif _sh(["runuser", "-u", TEST_USER, "--", sys.executable, "-c", "import numpy"], check=False).returncode:
            raise HostUnavailable(f"user {TEST_USER} cannot run {sys.executable} and this host allows no "
                                  "mount namespace (unshare -m) to expose it")
        (d / "sshd_config").write_text(f"""\
Port {host.port}
ListenAddress {host.host}
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
AllowUsers {TEST_USER}
UsePAM no
StrictModes no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
MaxSessions 50
MaxStartups 50
UseDNS no
PrintMotd no
LogLevel ERROR
Subsystem sftp internal-sftp
""")
        Path(host.known_hosts).write_text(host.known_hosts_line())
        argv = [SSHD, "-D", "-e", "-f", str(d / "sshd_config")]
        if host.private_mounts:
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    _mount_script(host, pw.pw_dir) + 'exec "$@"', "sh", *argv]
        if host.netns:
            argv = ["ip", "netns", "exec", host.netns, *argv]
        host.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(d / "sshd.log", "w"), start_new_session=True)
        _wait_listening(host)
        host.timings["start_s"] = time.perf_counter() - t0
        yield host
    finally:
        host.stop()


def _wait_listening(host: SshdHost, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.proc.poll() is not None:
            log = (host.dir / "sshd.log").read_text().strip()
            raise RuntimeError(f"sshd exited ({host.proc.returncode}): {log[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection((host.host, host.port), timeout=0.5):
            return
        time.sleep(0.01)
    raise RuntimeError(f"sshd did not listen on {host.host}:{host.port} within {timeout:g} s")


def sshd_fixture(scope: str = "module"):
    """A pytest fixture (use: ``sshd = sshd_fixture()`` at module level) yielding an SshdHost."""
    import pytest

    @pytest.fixture(scope=scope)
    def _sshd():
        try:
            ctx = sshd_host(netns=os.environ.get("EDGEKIT_TEST_SSHD_NETNS", "1") != "0")
            host = ctx.__enter__()
        except HostUnavailable as e:
            pytest.skip(str(e))
        try:
            yield host
        finally:
            ctx.__exit__(None, None, None)

    return _sshd
