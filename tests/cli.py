"""The command line as the backend tests drive it: edgekit in a child process, and the records a run wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def edgekit(*args, env=None, timeout=1800):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def records(out: Path, model: str) -> dict:
    """{(target, device name): record} of OUT/MODEL/results.jsonl."""
    rows = [json.loads(x) for x in (out / model / "results.jsonl").read_text().splitlines()]
    return {(r["target"], r["device"]["name"]): r for r in rows}
