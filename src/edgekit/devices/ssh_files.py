"""SFTP transfers for SSH devices: files and folders, both ways, keeping mode bits.

A push goes into the work folder under ``NAME.part`` (a file, or a whole tree: folders made,
files uploaded, then their modes set) and is renamed to ``NAME`` only once complete, so a
half-pushed file or folder never sits at the final name; on failure the ``.part`` is removed.
A pull lands in a temporary name beside the local target and replaces it at the end. Errors are
one sentence naming the device (remote disk full, lost connection, stalled transfer...).
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import DeviceError, UserError
from .base import replace
from .ssh_transport import _one_line, _why

if TYPE_CHECKING:
    from .ssh import SshDevice

_DIR_MODE = 0o700  # folders are made private while filling; their own mode is set at the end


class _LocalError(Exception):
    """Reading the local side of a push failed (a file vanished or is unreadable)."""

    def __init__(self, path: str, err: OSError):
        super().__init__(path, err)
        self.path, self.err = path, err


def _scan(local: Path, dev_name: str) -> tuple[list, list, int]:
    """The tree under ``local``: folders [(relative posix path, mode)], files [(relative, local
    path, size, mode)] and total size. Symbolic links are followed, as ``cp -rL`` does."""
    dirs, files, total = [], [], 0
    for top, subdirs, names in os.walk(local, followlinks=True, onerror=_raise):
        rel = Path(top).relative_to(local).as_posix()
        rel = "" if rel == "." else rel
        for d in sorted(subdirs):
            dirs.append((posixpath.join(rel, d), stat.S_IMODE(os.stat(os.path.join(top, d)).st_mode)))
        for n in sorted(names):
            path = os.path.join(top, n)
            try:
                st = os.stat(path)
            except OSError as e:
                raise _LocalError(path, e) from None
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"cannot push '{path}' to device '{dev_name}': not a regular file or folder.")
            files.append((posixpath.join(rel, n), path, st.st_size, stat.S_IMODE(st.st_mode)))
            total += st.st_size
    return dirs, files, total


def _raise(e: OSError):
    raise _LocalError(e.filename or "?", e)


def push(dev: SshDevice, local: Path, name: str | None = None) -> str:
    """Upload the file or folder ``local`` into the work folder as ``name``; return its remote path."""
    local = Path(local)
    name = name or local.name
    try:
        st = local.stat()
        is_dir = stat.S_ISDIR(st.st_mode)
        dirs, files, size = _scan(local, dev.name) if is_dir else ([], [], st.st_size)
    except (OSError, _LocalError) as e:
        why = e.err.strerror if isinstance(e, _LocalError) else e.strerror
        raise UserError(f"cannot push '{local}' to device '{dev.name}': {why or e}.") from None
    remote = posixpath.join(dev.workdir(), name)
    part = remote + ".part"
    sftp = dev._sftp_client()
    try:
        if is_dir:
            try:
                sftp.mkdir(part, _DIR_MODE)
            except IOError:  # a stale one from an interrupted push
                _remove_tree(dev, part)
                sftp.mkdir(part, _DIR_MODE)
            for rel, _ in dirs:
                sftp.mkdir(posixpath.join(part, rel), _DIR_MODE)
            for rel, path, fsize, mode in files:
                _put(sftp, path, posixpath.join(part, rel), fsize, mode)
            for rel, mode in reversed(dirs):
                sftp.chmod(posixpath.join(part, rel), mode | _DIR_MODE)
            sftp.chmod(part, stat.S_IMODE(st.st_mode) | _DIR_MODE)
        else:
            _put(sftp, str(local), part, size, stat.S_IMODE(st.st_mode))
        _rename(dev, sftp, part, remote)
    except Exception as e:
        lost = dev._live_transport() is None
        if lost:
            pass  # the .part goes with the work folder: close() reconnects to remove it
        elif is_dir:
            _remove_tree(dev, part)
        else:
            _remove_quietly(dev, part)
        if isinstance(e, _LocalError):
            why = e.err.strerror or _why(e.err)
            raise UserError(f"cannot push '{e.path}' to device '{dev.name}': {why}.") from None
        raise transfer_error(dev, e, f"pushing {local.name}", size, lost) from None
    return remote


def _put(sftp, path: str, remote: str, size: int, mode: int) -> None:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _LocalError(path, e) from None
    with f:
        attrs = sftp.putfo(f, remote, file_size=size, confirm=True)  # confirm: stats it anyway
    if attrs.st_mode is None or stat.S_IMODE(attrs.st_mode) != mode:
        sftp.chmod(remote, mode)


def _rename(dev: SshDevice, sftp, part: str, remote: str) -> None:
    try:
        sftp.posix_rename(part, remote)  # replaces a file (or an empty folder) atomically
        return
    except IOError:
        pass
    try:
        sftp.stat(remote)
    except IOError:
        sftp.rename(part, remote)  # servers without the posix-rename extension
        return
    old = f"{remote}.{uuid.uuid4().hex[:8]}.old"  # a folder there: move it aside, then remove it
    sftp.rename(remote, old)
    try:
        sftp.rename(part, remote)
    except IOError:
        sftp.rename(old, remote)
        raise
    _remove_tree(dev, old)


def pull(dev: SshDevice, remote: str, local: Path) -> None:
    """Download the file or folder ``remote`` to ``local`` (built beside it, then swapped in)."""
    local = Path(local)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
    sftp = dev._sftp_client()
    try:
        st = sftp.stat(remote)
    except FileNotFoundError:
        raise DeviceError(f"SSH device '{dev.name}' has no file {remote}.") from None
    except Exception as e:
        raise transfer_error(dev, e, f"pulling {posixpath.basename(remote.rstrip('/'))}", None) from None
    try:
        if stat.S_ISDIR(st.st_mode):
            _get_tree(sftp, remote, tmp, st.st_mode)
        else:
            sftp.get(remote, str(tmp))
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        replace(tmp, local)
    except Exception as e:
        raise transfer_error(dev, e, f"pulling {posixpath.basename(remote.rstrip('/'))}", None) from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _get_tree(sftp, remote: str, local: Path, mode: int) -> None:
    local.mkdir(mode=_DIR_MODE)
    for attr in sftp.listdir_attr(remote):
        src, dst = posixpath.join(remote, attr.filename), local / attr.filename
        if stat.S_ISLNK(attr.st_mode):
            attr = sftp.stat(src)  # follow links, as the push does
        if stat.S_ISDIR(attr.st_mode):
            _get_tree(sftp, src, dst, attr.st_mode)
        elif stat.S_ISREG(attr.st_mode):
            sftp.get(src, str(dst))
            os.chmod(dst, stat.S_IMODE(attr.st_mode))
    os.chmod(local, stat.S_IMODE(mode) | _DIR_MODE)


def _remove_quietly(dev: SshDevice, remote: str) -> None:
    try:
        dev._sftp.remove(remote)
        return
    except Exception:
        pass
    _remove_tree(dev, remote)


def _remove_tree(dev: SshDevice, remote: str) -> None:
    try:
        dev._run(["rm", "-rf", "--", remote], 10)
    except Exception:
        pass


def transfer_error(dev: SshDevice, e: Exception, doing: str, size: int | None,
                   lost: bool | None = None) -> DeviceError:
    if lost or (lost is None and dev._live_transport() is None):
        return dev._lost_or(e, doing)
    if isinstance(e, TimeoutError):
        return DeviceError(f"{doing} to SSH device '{dev.name}' stalled for {dev.command_timeout:g} s.",
                           "Check the network, or raise command_timeout.")
    if size is not None and dev._workdir:
        free = _free_kb(dev, dev._workdir)
        if free is not None and free * 1024 < size + 64 * 1024:
            return DeviceError(f"{doing} to SSH device '{dev.name}' failed: remote disk full in "
                               f"{dev.remote_tmp} ({free} KB free, {size // 1024 + 1} KB needed).",
                               "Free space on the device, or point remote_tmp in devices.toml at a larger "
                               "file system.")
    return DeviceError(f"{doing} on SSH device '{dev.name}' failed ({_one_line(_why(e))}).")


def _free_kb(dev: SshDevice, path: str) -> int | None:
    try:
        code, out, _ = dev._run(["df", "-Pk", "--", path], 10)
        return int(out.strip().splitlines()[-1].split()[3]) if code == 0 else None
    except Exception:
        return None
