"""A TFLite source as the reference: through the runner with LiteRT, like any TFLite artifact."""
from __future__ import annotations

from ...core.reference import RunnerReference


class LiteRtReference(RunnerReference):
    runtime, label = "litert", "litert fp32"
