"""Lazy imports of heavy, optional stacks: a missing one names the extra to install."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util


def require(module: str, extra: str, what: str = ""):
    """Import ``module`` or raise MissingExtra naming ``edgekit[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        from .errors import MissingExtra

        raise MissingExtra(module, extra, what) from None


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def native_output_silenced():
    """Silence fds 1 and 2 (and Python warnings) for a framework call whose native code prints
    progress there (TensorFlow's absl/CUDA-stub lines, the TFLite calibrator). Exceptions still
    propagate with their messages; edgekit reports those."""
    import os
    import sys
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def import_quietly(module: str, extra: str, what: str = ""):
    """Import a framework whose native code logs at import time, with that output silenced."""
    import sys

    if module in sys.modules:
        return sys.modules[module]
    with native_output_silenced():
        return require(module, extra, what)


@contextlib.contextmanager
def quiet_frameworks(*loggers: str):
    """Keep frameworks' Python-level chatter (the named loggers below ERROR, warnings, stdout) off
    the user's terminal while a converter calls them; a real failure still raises."""
    import io
    import logging
    import warnings

    logs = [logging.getLogger(n) for n in loggers]
    levels = [lg.level for lg in logs]
    for lg in logs:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(logs, levels):
            lg.setLevel(lv)
