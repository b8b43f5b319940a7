"""Graph optimization as a recipe step (issue 14 part 4): ONNX Runtime's transformer fusions on a
transformer feed-forward block (bias + GELU, residual + LayerNorm), recorded in the manifest, the
artifact proven and equal to the source."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.onnx

BLOCK = textwrap.dedent('''
    import torch
    from torch import nn

    class FeedForward(nn.Module):
        def __init__(self, d=64):
            super().__init__()
            self.up, self.down, self.norm = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.LayerNorm(d)

        def forward(self, x):
            return self.norm(x + self.down(nn.functional.gelu(self.up(x))))

    def build():
        torch.manual_seed(0)
        return FeedForward().eval(), {"x": torch.randn(1, 16, 64)}
''')


def test_transformer_fusions_are_applied_recorded_and_proven(tmp_path):
    (tmp_path / "block.py").write_text(BLOCK)
    import numpy as np

    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(40, 1, 16, 64)).astype(np.float32))
    r = subprocess.run([sys.executable, "-m", "edgekit", "run", f"{tmp_path / 'block.py'}:build", "--targets",
                        "onnx,onnx-optimized", "--data", str(tmp_path / "x.npz"), "-o", str(tmp_path / "out"),
                        "--min-runs", "10", "--min-seconds", "0.1"], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / "out" / "block" / "onnx-optimized" / "manifest.json").read_text())
    note = m["route"][-1]["notes"][0]
    assert "SkipLayerNormalization x1" in note and "BiasGelu x1" in note, note
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "out" / "block" / "onnx-optimized" / "model.onnx")).graph.node}
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops
    rows = [json.loads(x) for x in (tmp_path / "out" / "block" / "results.jsonl").read_text().splitlines()]
    fused = next(x for x in rows if x["target"] == "onnx-optimized")
    assert fused["status"] == "ok" and fused["parity"]["passed"]
    assert min(o["cosine_min"] for o in fused["parity"]["outputs"]) > 0.99999
