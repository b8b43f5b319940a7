"""Keep the frameworks' native log lines out of the user's terminal (variables the backends name)."""
from __future__ import annotations

import os


def quiet_frameworks() -> None:
    from ..backends import quiet_env

    for key, value in quiet_env().items():
        os.environ.setdefault(key, value)
