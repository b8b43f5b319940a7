"""Lazy imports of heavy, optional stacks: a missing one names the extra to install."""
from __future__ import annotations

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
