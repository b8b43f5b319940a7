"""The one exception tree of edgekit.

Every error a user can cause or meet is an :class:`EdgekitError`. Each carries one
sentence that names the thing and (in ``hint``) the fix. The CLI is the only place that
turns them into messages and exit codes; library code raises and never prints.
"""
from __future__ import annotations


class EdgekitError(Exception):
    """Base of every edgekit error. ``str(err)`` is the one-line message."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"

    def one_line(self) -> str:
        """The message and hint on one line (a library's multi-line text folded in)."""
        return " ".join(str(self).split())


class UserError(EdgekitError):
    """Something the user passed is wrong: a file, a name, a shape, data."""

    exit_code = 2


class SourceNotFound(UserError):
    pass


class CorruptModel(UserError):
    pass


class UnknownName(UserError):
    """Unknown target, recipe, data set, device... (with a did-you-mean)."""


class SpecError(UserError):
    """A declarative file (target, recipe, devices.toml) is malformed."""


class ShapeMismatch(UserError):
    pass


class DataError(UserError):
    pass


class MissingExtra(EdgekitError):
    """An optional stack is not installed; names the extra to install."""

    exit_code = 3

    def __init__(self, module: str, extra: str, what: str = ""):
        what = what or module
        super().__init__(f"{what} needs the Python package '{module}', which is not installed.", install_hint(module, extra))
        self.module = module
        self.extra = extra


def install_hint(module: str, extra: str) -> str:
    """The fix that works: the extra, and ``edgekit setup`` for modules pip cannot install as dependencies."""
    try:
        from ..backends import setup_for_module

        backend = setup_for_module(module)
    except Exception:  # noqa: BLE001  the hint must never fail the error it explains
        backend = None
    if backend is not None:
        return f"Install it with: pip install 'edgekit[{extra}]' && edgekit setup {backend.name}"
    return f"Install it with: pip install 'edgekit[{extra}]'"


class SetupFailed(EdgekitError):
    """A step of ``edgekit setup`` failed."""

    exit_code = 3


class ConversionError(EdgekitError):
    """One converter (an edge of the graph) failed."""

    exit_code = 4

    def __init__(self, edge: str, message: str, hint: str | None = None):
        super().__init__(f"{edge}: {message}", hint)
        self.edge = edge
        self.reason = message


class UnsupportedOperator(ConversionError):
    """An edge has no conversion for an operator; ``node`` names where the model uses it."""

    def __init__(self, edge: str, op: str, detail: str = "", node: str | None = None):
        msg = (f"operator '{op}'" + (f" (node '{node}')" if node else "") + " is not supported by this converter"
               + (f" ({detail})." if detail else "."))
        super().__init__(edge, msg, "Try another target, or rewrite that operator in the model.")
        self.op = op
        self.node = node


class NoRoute(EdgekitError):
    """The planner found no usable route, or every route failed."""

    exit_code = 4


class RunnerError(EdgekitError):
    """The runner (a child process or a remote worker) failed or crashed."""

    exit_code = 5


class ParityFailed(EdgekitError):
    exit_code = 6


class DeviceError(EdgekitError):
    """A device could not be reached or used: connection, login, host key, file transfer, remote command."""

    exit_code = 7


def did_you_mean(name: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"Did you mean '{close[0]}'?" if close else ""
