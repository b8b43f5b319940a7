"""Leases: one measurement per device at a time, across processes.

A lease is an exclusive ``flock`` on ``<cache>/leases/<device>.lock``. The kernel drops the lock
when its holder exits, however it exits, so a dead holder's lease is recovered by the next
taker. The file also says who holds it, for the message a waiting run prints.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager

from ..core.artifacts import cache_root
from ..core.errors import EdgekitError


class DeviceBusy(EdgekitError):
    exit_code = 8


@contextmanager
def lease(device: str, wait_s: float = 0.0, poll_s: float = 0.2):
    """Hold ``device`` exclusively; wait up to ``wait_s`` seconds for another holder to finish."""
    folder = cache_root() / "leases"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(path)
                    raise DeviceBusy(f"Device '{device}' is in use by {holder}.",
                                     "Wait for it to finish, or pass --device-wait SECONDS to queue.") from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path) -> str:
    try:
        info = json.loads(open(path).read() or "{}")
        return f"process {info.get('pid', '?')} (since {info.get('since', '?')})"
    except (OSError, ValueError):
        return "another process"
