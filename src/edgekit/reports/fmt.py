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


def rel_text(fraction) -> str:
    """A small fraction as a percentage: "12%", "6.4%", "0.25%", "<0.01%", "0%"."""
    v = num(fraction)
    if v is None:
        return "-"
    pct = 100 * v
    if pct == 0:
        return "0%"
    if pct < 0.01:
        return "<0.01%"
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.1f}%" if pct >= 1 else f"{pct:.2f}%"


def max_err_text(fraction, abs_err) -> str:
    """The max abs error as a % of the source output's scale; "abs 1.92e+00" when no scale was recorded."""
    if num(fraction) is not None:
        return rel_text(fraction)
    return "-" if num(abs_err) is None else f"abs {max_abs_text(abs_err)}"


def ci_text(p50, lo, hi) -> str:
    """A CI of the median around it, in percent: "±0.2%", or "-0.1%/+0.4%"."""
    p50, lo, hi = num(p50), num(lo), num(hi)
    if not p50 or lo is None or hi is None:
        return "-"
    down, up = 100 * (p50 - lo) / p50, 100 * (hi - p50) / p50
    if abs(down - up) < 0.05 or max(down, up) < 0.1:
        return f"±{max(down, up):.1f}%"
    return f"-{down:.1f}%/+{up:.1f}%"


def key_text(key) -> str:
    """A measurement's key (model, target, device) as every text names it: "model/target@device"."""
    model, target, device = (tuple(key) + (None, None, None))[:3]
    return f"{model or '?'}/{target or '?'}@{device or 'local'}"


def calibration_text(used, available, cap) -> str:
    """How many calibration samples a recipe took of those the data offered, and why it took fewer."""
    used, available, cap = num(used), num(available), num(cap)
    if used is None:
        return "-" if available is None else f"{available:.0f} calibration samples available"
    if used == 0:
        return "no calibration (the recipe needs none)"
    if available is not None and used < available:
        why = " (the recipe's cap)" if cap is not None and used >= cap else ""
        return f"{used:.0f} of {available:.0f} calibration samples{why}"
    return f"{used:.0f} calibration samples"


def path_html(path) -> str:
    """A file path for HTML: escaped, with a line-break opportunity after each slash (never mid-name)."""
    return esc(path).replace("/", "/<wbr>")


def plain_table(rows: list[tuple]) -> str:
    """Rows of text cells as aligned columns, a rule under the first (the heading)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
