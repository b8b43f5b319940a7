"""What the user sees: edgekit's own lines on the terminal, the frameworks' log noise (native
logging, Python warnings, progress bars written to stderr) in a log file whose path an error names.

``capture()`` points file descriptor 2, and with it ``sys.stderr``, at the log file and keeps a
private copy of the terminal for edgekit (``say``). Child processes inherit the log as their stderr.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

KEEP_LOGS = 20
_stream = None  # the terminal (a copy of the original stderr) once captured
_log: Path | None = None


def terminal():
    return _stream or sys.stderr


def say(line: str) -> None:
    out = terminal()
    print(line, file=out, flush=True)


def log_path() -> Path | None:
    """The log file, if anything was written to it."""
    if _log is not None and _log.exists() and _log.stat().st_size > 0:
        return _log
    return None


def capture(command: str) -> None:
    """Send stderr (fd 2) to a fresh log file for this command; edgekit keeps the terminal."""
    global _stream, _log
    if _stream is not None or os.environ.get("EDGEKIT_LOG") == "-":  # EDGEKIT_LOG=- keeps everything visible
        return
    from .artifacts import cache_root

    folder = Path(os.environ.get("EDGEKIT_LOG") or cache_root() / "logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        return  # no place for a log: everything stays on the terminal
    sys.stderr.flush()
    _stream = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(fd, 2)
    os.close(fd)
    _log = path
    _prune(folder)


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-KEEP_LOGS]:
        try:
            old.unlink()
        except OSError:
            pass
