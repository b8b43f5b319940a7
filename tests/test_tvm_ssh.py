"""A TVM RPC server that edgekit starts over SSH (a tvm-rpc device with ``options.ssh``), on the
SSH test host: the module goes to the server started there, runs there and is timed there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.core.lazy import available

from .sshd_host import sshd_fixture

pytestmark = [pytest.mark.ssh, pytest.mark.tvm,
              pytest.mark.skipif(not available("tvm"), reason="needs apache-tvm (edgekit setup tvm)")]
ROOT = Path(__file__).resolve().parents[1]
sshd = sshd_fixture("module")


def test_rpc_server_started_over_ssh(sshd, tmp_path):
    inv = tmp_path / "devices.toml"
    inv.write_text(sshd.devices_toml("test-host") + """
[devices.board-rpc]
kind = "tvm-rpc"
options = { ssh = "test-host", timeout = 300 }
""")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", str(ROOT / "examples" / "digits_cnn.py") + ":build",
                        "--targets", "tvm", "--data", "digits", "--out", str(out), "--device", "board-rpc",
                        "--min-runs", "20", "--min-seconds", "0.2", "--warmup", "2"],
                       capture_output=True, text=True, timeout=1800, env=dict(os.environ, EDGEKIT_DEVICES=str(inv)))
    rows = [json.loads(x) for x in (out / "digits_cnn" / "results.jsonl").read_text().splitlines()]
    row = next(x for x in rows if x["target"] == "tvm")
    assert row["status"] == "ok", (row.get("reason"), r.stderr[-1500:])
    assert f"TVM RPC: {sshd.host}:" in row["runtime_version"]
    assert row["parity"]["passed"] and row["bench"]["runtime_timer"]["remote"]
