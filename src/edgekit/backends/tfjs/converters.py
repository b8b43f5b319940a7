"""SavedModel / Keras -> TF.js graph model with the tensorflowjs converter, in a child process
(convert_child.py: it stands in for two imports tensorflowjs never uses, which would otherwise pull
an old TensorFlow). Recipes: none (float32 weights), fp16 (float16 weights) and int8-dynamic, which
is the converter's uint8 weight quantization (affine per tensor; dequantized to float32 at load, so
activations stay float as in any dynamic-range recipe). The target option ``shard_bytes`` sets the
size of each weight file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter

CONVERT_TIMEOUT_S = 1800
DEFAULT_SHARD_BYTES = 4 * 1024 * 1024
QUANTIZE = {"none": "", "fp16": "float16", "int8-dynamic": "uint8"}
RECIPE_NOTE = {"none": "float32 weights", "fp16": "float16 weights (float32 at run time)",
               "int8-dynamic": "uint8 weights, affine per tensor (float32 at run time)"}


def shards(folder: Path) -> list[Path]:
    """The weight files model.json names, in order."""
    manifest = json.loads((folder / "model.json").read_text()).get("weightsManifest", [])
    return [folder / p for group in manifest for p in group.get("paths", [])]


def run_converter(src: Path, kind: str, out_dir: Path, ctx, edge: str) -> Path:
    recipe = ctx.recipe.kind if ctx.recipe is not None else "none"
    shard = ctx.target.option("shard_bytes") or DEFAULT_SHARD_BYTES
    if int(shard) < 1024:
        raise ConversionError(edge, f"option shard_bytes = {shard} is too small (at least 1024 bytes).")
    folder = out_dir / "model"
    args = {"src": str(src), "kind": kind, "out": str(folder), "quantize": QUANTIZE[recipe], "shard_bytes": int(shard)}
    # oneDNN's graph rewrites would fuse ops into kernels TF.js lacks (_MklLayerNorm, in MiniLM): off
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", TF_ENABLE_ONEDNN_OPTS="0")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgekit.backends.tfjs.convert_child", json.dumps(args)],
                              capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise ConversionError(edge, f"the tensorflowjs converter did not finish within {CONVERT_TIMEOUT_S} s.") \
            from None
    if proc.returncode != 0:
        text = proc.stderr.strip()
        unsupported = _unsupported_op(text)
        if unsupported:
            raise UnsupportedOperator(edge, unsupported, "TF.js has no kernel for it")
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("WARNING", "W0000", "I0000"))]
        raise ConversionError(edge, f"the tensorflowjs converter failed: {(lines or ['no output'])[-1][:300]}")
    if not (folder / "model.json").exists():
        raise ConversionError(edge, "the tensorflowjs converter wrote no model.json.")
    missing = [p.name for p in shards(folder) if not p.exists()]
    if missing:
        raise ConversionError(edge, f"the tensorflowjs converter's model.json names missing shards: {missing[:3]}.")
    n = len(shards(folder))
    ctx.notes.append(f"{RECIPE_NOTE[recipe]}, {n} weight shard{'s' if n != 1 else ''} of at most {int(shard)} bytes")
    return folder


def _unsupported_op(text: str) -> str | None:
    import re

    m = re.search(r"Unsupported Ops in the model[^\n:]*[\n:]\s*([A-Za-z0-9_, ]+)", text)
    return m.group(1).split(",")[0].strip() if m else None


class TfjsFromSavedModel(Converter):
    src, dst = "savedmodel", "tfjs"
    recipes = frozenset(QUANTIZE)
    requires = (("tensorflowjs", "tfjs"), ("tensorflow", "tfjs"))
    tools = ("tensorflowjs", "tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos")
    target_options = ("shard_bytes",)
    revision = 2

    def convert(self, artifact, out_dir, ctx):
        return run_converter(Path(artifact.path), "savedmodel", out_dir, ctx, self.name())


class TfjsFromKeras(Converter):
    """The Keras model is exported to a SavedModel first (in the child process), then converted."""

    src, dst = "keras", "tfjs"
    recipes = frozenset(QUANTIZE)
    requires = (("tensorflowjs", "tfjs"), ("tensorflow", "tfjs"))
    tools = ("tensorflowjs", "tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos", "keras")
    target_options = ("shard_bytes",)
    revision = 2

    def convert(self, artifact, out_dir, ctx):
        return run_converter(Path(artifact.path), "keras", out_dir, ctx, self.name())
