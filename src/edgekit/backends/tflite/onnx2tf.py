"""ONNX -> SavedModel with onnx2tf, in a child process (it is heavy, chatty, and may crash)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...core.errors import ConversionError, UnsupportedOperator
from ...core.graph import Converter
from ..onnx.graph_edits import constants_to_initializers
from ..onnx.ops import check_standard_ops, op_types

ONNX2TF_TIMEOUT_S = 1800
# onnx2tf converts op by op through TensorFlow: its time grows with the model (digits CNN, 0.1 MB:
# ~20 s; all-MiniLM-L6-v2, 90 MB: 170-460 s on 2 cores, where litert-torch takes ~20 s). On a model
# this large, the routes that avoid it come first.
LARGE_MODEL_BYTES = 10_000_000
LARGE_MODEL_EXTRA_COST = 1.0
# ONNX ops whose TF lowering has no TFLite builtin kernel (Erf: the GELU of BERT-style models)
PSEUDO_OPS = {"Erf"}


class SavedModelFromOnnx(Converter):
    """onnx2tf in a child process (it is heavy, chatty, and may crash). NCHW inputs are kept NCHW
    so that the artifact takes exactly the source model's inputs."""

    src, dst = "onnx", "savedmodel"
    cost = 2.0
    keep_nchw = True  # -k: float inputs of rank >= 3 stay channels-first (onnx2tf_nhwc.py: the variant without)
    requires = (("onnx2tf", "tflite"), ("tf_keras", "tflite"), ("tensorflow", "tflite"),
                ("onnx_graphsurgeon", "tflite"))
    tools = ("onnx2tf", "tensorflow|tensorflow-cpu|tensorflow-intel|tensorflow-macos")
    revision = 5  # 5: node names made valid TensorFlow scope names; 4: dynamic dims fixed (-ois)

    @classmethod
    def key_material(cls, ctx):
        return {k: list(v) for k, v in fixed_shapes(ctx).items()} or None

    @classmethod
    def cost_for(cls, source) -> float:
        large = (getattr(source, "size_bytes", None) or 0) > LARGE_MODEL_BYTES
        return cls.cost + (LARGE_MODEL_EXTRA_COST if large else 0.0)

    @classmethod
    def judge(cls, domain, op, target, recipe, facts):
        from .preflight import judge_onnx2tf

        return judge_onnx2tf(domain, op, cls.name(), PSEUDO_OPS)

    @classmethod
    def preflight_notes(cls, facts, target, recipe):
        from .preflight import onnx2tf_notes

        return onnx2tf_notes()

    def convert(self, artifact, out_dir, ctx):
        import onnx

        check_standard_ops(artifact.path, self.name())
        ops_dir = Path(importlib.util.find_spec("onnx2tf").origin).parent / "ops"  # no TF import just to look
        for domain, op in op_types(artifact.path):
            if domain in ("", "ai.onnx") and not (ops_dir / f"{op}.py").exists():
                raise UnsupportedOperator(self.name(), op, "onnx2tf has no converter for it")
        work = out_dir / "work"
        work.mkdir()
        onnx_copy = work / "model.onnx"  # onnx2tf's onnxsim step overwrites its input in place
        shutil.copyfile(artifact.path, onnx_copy)
        model = onnx.load(str(onnx_copy), load_external_data=False)
        constants = constants_to_initializers(model)  # see graph_edits: a scalar Constant can fail onnx2tf
        renamed = scope_safe_names(model)  # onnx2tf makes TensorFlow name scopes of node names
        if constants or renamed:
            onnx.save(model, str(onnx_copy))
        inits = {i.name for i in model.graph.initializer}
        keep = [i.name for i in model.graph.input if i.name not in inits and self.keep_nchw
                and len(i.type.tensor_type.shape.dim) >= 3 and i.type.tensor_type.elem_type in (1, 10)]
        self._prepare(work, model, ctx)
        tf_dir = work / "tf"
        argv = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_copy), "-o", str(tf_dir), "-osd", "-coion", "-n"]
        if keep:
            argv += ["-k", *keep]
        fixed = fixed_shapes(ctx)
        if fixed:  # onnx2tf cannot convert some graphs with dynamic spatial dims ("Dimension -1 must be >= 0")
            argv += ["-ois", *(f"{name}:{','.join(map(str, shape))}" for name, shape in fixed.items())]
        pseudo = sorted(PSEUDO_OPS & {op for _, op in op_types(artifact.path)})
        if pseudo:  # no TFLite builtin kernel: onnx2tf rewrites them into builtin math
            argv += ["-rtpo", *pseudo]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        try:
            proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=ONNX2TF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(self.name(), f"onnx2tf did not finish within {ONNX2TF_TIMEOUT_S} s.") from None
        saved = tf_dir / "saved_model.pb"
        if proc.returncode != 0 or not saved.exists():
            err = _last_error(proc.stdout + proc.stderr)
            raise ConversionError(self.name(), "onnx2tf failed" + (" " if err.startswith("at ") else ": ") + err)
        final = out_dir / "saved_model"
        final.mkdir()
        for item in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            if (tf_dir / item).exists():
                shutil.move(str(tf_dir / item), str(final / item))
        shutil.rmtree(work, ignore_errors=True)
        ctx.notes.append("onnx2tf" + (f", kept NCHW inputs: {', '.join(keep)}" if keep else "")
                         + (f", {constants} Constant nodes as initializers" if constants else "")
                         + (f", {renamed} nodes renamed to valid TensorFlow scope names" if renamed else "")
                         + (f", pseudo ops for {', '.join(pseudo)}" if pseudo else "")
                         + (", dynamic dimensions fixed at the data's sample shapes (the artifact takes only "
                            "these): " + ", ".join(f"{n} {list(v)}" for n, v in fixed.items()) if fixed else ""))
        return final

    def _prepare(self, work: Path, model, ctx) -> None:
        """Put what onnx2tf reads from its working folder there (subclasses)."""


def scope_safe_names(model) -> int:
    """Rename the nodes whose names TensorFlow refuses as name scopes ('Softmax@0' in paddle2onnx exports:
    "not a valid scope name"): other characters become '_', a name starts with a letter, digit or '.';
    returns how many were renamed (names stay unique)."""
    import re

    bad = re.compile(r"[^A-Za-z0-9_.\\/>-]")
    seen = {n.name for n in model.graph.node}
    count = 0
    for n in model.graph.node:
        if not n.name or (not bad.search(n.name) and re.match(r"[A-Za-z0-9.]", n.name)):
            continue
        new = bad.sub("_", n.name)
        new = new if re.match(r"[A-Za-z0-9.]", new) else "n" + new
        while new in seen:
            new += "_"
        seen.add(new)
        n.name = new
        count += 1
    return count


def fixed_shapes(ctx) -> dict[str, tuple[int, ...]]:
    """Every input's shape as one sample of the data gives it, where the ONNX file keeps dynamic
    dimensions past the batch (core/shapes.py: fixed once for the route, or found here); {} otherwise.
    onnx2tf then converts a model fixed at those shapes (``-ois``), which some graphs need (PP-OCR,
    YOLO exports)."""
    from ...core.shapes import data_shapes

    fixed = getattr(ctx.source, "shapes_from_data", None)
    return dict(fixed) if fixed else data_shapes(ctx.source.inputs, getattr(ctx, "data", None))


def _last_error(text: str) -> str:
    """One line for onnx2tf's failure: the cause and the ONNX node it failed at when TF names them (a
    layer's "Exception encountered when calling layer" says neither), else its last error line."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for k in range(len(lines) - 1, -1, -1):
        if "Exception encountered when calling layer" not in lines[k]:
            continue
        cause = next((ln for ln in lines[k + 1:] if not ln.startswith(("Call arguments", "•"))), "")
        cause = re.sub(r" for '\{\{node .*", "", cause).rstrip(" :")
        node = next((m.group(1) for ln in lines[k + 1:] for m in [re.match(r"• name='([^']+)'", ln)] if m), None)
        layer = re.search(r"layer '([^']+)'", lines[k])
        where = f"at ONNX node '{node}'" if node else f"at layer '{layer.group(1)}'" if layer else ""
        if cause:
            return (f"{where}: {cause}" if where else cause)[:300]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:300]
    return (lines[-1] if lines else "no output")[:300]
