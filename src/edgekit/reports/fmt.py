"""Numbers as people read them, the same in every report: the console table, Markdown, HTML, the
fit and gate texts. Every function takes a value that may be missing (None, NaN, a bool, a string
from an old file) and returns "-" for it instead of failing."""
from __future__ import annotations

import html
import math

TASK_PERCENT_METRICS = (None, "accuracy", "top1", "top5", "f1", "recall", "precision")


def num(v) -> float | None:
    """``v`` as a finite float, or None (missing, NaN, infinite, a bool or not a number)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def esc(s) -> str:
    """HTML-escaped text (None is empty)."""
    return html.escape("" if s is None else str(s), quote=True)


def size_text(n) -> str:
    """Bytes as B / KB / MB / GB (binary units, as the reports always printed them)."""
    n = num(n)
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    if n < 1024 ** 3:
        return f"{n / 1024 / 1024:.2f} MB"
    return f"{n / 1024 ** 3:.2f} GB"


def ms_text(v) -> str:
    """Milliseconds with three significant digits (thousands separated above 1000)."""
    v = num(v)
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.1f}"
    return f"{v:#.3g}" if v >= 0.001 else f"{v:.2e}"


def pct_text(v, digits: int = 2) -> str:
    v = num(v)
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def metric_text(metric, v) -> str:
    """A task metric's value: a percentage for accuracy-like metrics, else four significant digits."""
    v = num(v)
    if v is None:
        return "-"
    return pct_text(v) if metric in TASK_PERCENT_METRICS else f"{v:.4g}"


def delta_text(points) -> str:
    """A change of the task metric in points, signed."""
    points = num(points)
    return "-" if points is None else f"{points:+.2f}"


def cosine_text(c) -> str:
    c = num(c)
    return "-" if c is None else f"{c:.6f}"


def max_abs_text(v) -> str:
    v = num(v)
    return "-" if v is None else f"{v:.2e}"


def speedup_text(v) -> str:
    v = num(v)
    return "-" if not v else f"{v:.2f}x"


def shorten(s, n: int) -> str:
    """``s`` on one line, cut to ``n`` characters with an ellipsis."""
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"
