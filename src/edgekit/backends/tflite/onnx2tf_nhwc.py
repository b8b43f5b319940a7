"""ONNX -> SavedModel with onnx2tf in its default (NHWC) layout, wrapped to take the source's inputs.

``SavedModelFromOnnx`` keeps channels-first inputs (``-k``), which fails on some real graphs
("Output tensors of a Functional model must be the output of a TensorFlow Layer") that onnx2tf's
default mode converts. This edge runs that default mode (every rank-3..5 input becomes channels-last)
and wraps the result in a SavedModel whose signature takes the source's inputs (same names as
onnx2tf's, the source's layout and dtypes): it transposes them before calling the NHWC model and
transposes back each output onnx2tf left channels-last. Which outputs those are is measured: the
NHWC model and ONNX Runtime run the same inputs, and each output takes the layout that matches. The
TFLite converter then sees a model with the source's layout (calibration data as everywhere else).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ...core.errors import ConversionError
from ...core.lazy import import_quietly, native_output_silenced
from .onnx2tf import SavedModelFromOnnx, fixed_shapes

# onnx2tf reads this file from its working folder before downloading it (for 3-channel NHWC inputs)
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
MIN_COSINE = 0.99  # an output's layout must match ONNX Runtime's at least this well


def channels_last(rank: int) -> tuple[int, ...]:
    """The permutation onnx2tf applies to a rank-3..5 input: NCW -> NWC, NCHW -> NHWC, NCDHW -> NDHWC."""
    return (0, *range(2, rank), 1) if 3 <= rank <= 5 else tuple(range(rank))


def channels_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1)) if 3 <= rank <= 5 else tuple(range(rank))


class SavedModelFromOnnxNhwc(SavedModelFromOnnx):
    """onnx2tf without ``-k``, then a wrapper that takes the source's (channels-first) inputs."""

    src, dst = "onnx", "savedmodel"
    cost = 2.3  # after the -k edge (2.0): its artifact has no transposes at the edges
    keep_nchw = False
    requires = SavedModelFromOnnx.requires + (("onnxruntime", "onnx"),)
    tools = SavedModelFromOnnx.tools + ("onnxruntime",)
    revision = 4  # 2: the base edge turns Constant nodes into initializers; 3: it fixes dynamic dims (-ois); 4: layout checked at those shapes

    def _prepare(self, work, model, ctx):
        # 3-channel NHWC inputs make onnx2tf fetch sample images for its own check (offline: it fails);
        # it takes the file from its working folder when there. Deterministic, so that the cache holds.
        rng = np.random.default_rng(0)
        np.save(work / SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))

    def convert(self, artifact, out_dir, ctx):
        inner_dir = out_dir / "onnx2tf"
        inner_dir.mkdir()
        inner = super().convert(artifact, inner_dir, ctx)
        final = out_dir / "saved_model"
        moved_in, moved_out = wrap_nchw(inner, final, ctx.source, Path(artifact.path), self.name(), ctx.data,
                                        fixed_shapes(ctx))
        shutil.rmtree(inner_dir, ignore_errors=True)
        base = ctx.notes.pop() if ctx.notes else "onnx2tf"  # the base edge's note, said once
        ctx.notes.append(base.replace("onnx2tf", "onnx2tf in its NHWC layout", 1) + "; the artifact takes the "
                         "source's layout: "
                         + (f"inputs {', '.join(moved_in)} transposed channels-last inside" if moved_in
                            else "no input transposed")
                         + (f", outputs {', '.join(moved_out)} transposed back" if moved_out else ""))
        return final


def wrap_nchw(inner: Path, final: Path, source, onnx_path: Path, edge: str, data=None,
              fixed: dict | None = None) -> tuple[list, list]:
    """Save at ``final`` a SavedModel that takes ``source``'s inputs and calls the NHWC one at ``inner``;
    returns the input and output names it transposes. Which outputs to transpose back is measured on
    a calibration sample of ``data`` (random inputs without it). ``fixed``: the input shapes onnx2tf
    was given (``-ois``, where the source's are dynamic), which its layout is checked against."""
    tf = import_quietly("tensorflow", "tflite", "onnx2tf's NHWC route")
    with native_output_silenced():
        loaded = tf.saved_model.load(str(inner))
    fn = loaded.signatures["serving_default"]
    _, sig_in = fn.structured_input_signature
    inputs = []  # (signature name, perm, channels-first TensorSpec)
    for s in source.inputs:
        name = _find(list(sig_in), s.name, len(inputs), edge, "input")
        spec = sig_in[name]
        perm = _input_perm(s, spec, edge, (fixed or {}).get(s.name))
        shape = [None] * len(perm)
        for j, p in enumerate(perm):
            shape[p] = spec.shape[j]
        inputs.append((name, perm, tf.TensorSpec(shape, spec.dtype, name=name)))
    out_perms = _output_perms(fn, source, inputs, onnx_path, edge, data)

    @tf.function(input_signature=[spec for _, _, spec in inputs])
    def serve(*xs):
        feed = {name: (tf.transpose(x, perm) if list(perm) != sorted(perm) else x)
                for (name, perm, _), x in zip(inputs, xs)}
        out = fn(**feed)
        return {k: (tf.transpose(v, out_perms[k]) if k in out_perms else v) for k, v in out.items()}

    module = tf.Module()
    module.inner = loaded
    module.serve = serve
    with native_output_silenced():
        tf.saved_model.save(module, str(final), signatures={"serving_default": serve.get_concrete_function()})
    moved_in = [name for name, perm, _ in inputs if list(perm) != sorted(perm)]
    return moved_in, sorted(out_perms)


def _input_perm(spec, tf_spec, edge, fixed=None) -> tuple[int, ...]:
    """onnx2tf's rule (every rank-3..5 input goes channels-last), checked against the shape it gave
    (the source's, or ``fixed``: the shape its dynamic dims were fixed at)."""
    rank = len(spec.shape)
    want = list(fixed) if fixed else spec.fixed_shape()
    have = list(tf_spec.shape)
    for perm in (channels_last(rank), tuple(range(rank))):
        if len(have) == rank and all(h is None or h == want[p] or (i == 0 and p == 0)
                                     for i, (h, p) in enumerate(zip(have, perm))):
            return perm
    raise ConversionError(edge, f"onnx2tf's input '{tf_spec.name}' has shape {have}, which is no layout of the "
                          f"source's {list(spec.shape)}.")


def _output_perms(fn, source, inputs, onnx_path: Path, edge, data=None) -> dict:
    """Run the NHWC model and ONNX Runtime on the same inputs; an output whose values match only once
    moved channels-first is transposed back."""
    import onnxruntime as ort
    import tensorflow as tf

    rng = np.random.default_rng(0)
    feed = {}
    calib = data.calib if data is not None and data.n_calib else {}
    for s in source.inputs:
        dtype = np.dtype(s.dtype)
        if s.name in calib:  # a real sample (its shape fixes any dynamic dimension)
            a = calib[s.name]
            feed[s.name] = np.ascontiguousarray(a[0] if s.name in data.stacked else a[:1]).astype(dtype)
        else:
            shape = s.fixed_shape()
            feed[s.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    try:
        got = fn(**{name: tf.constant(np.transpose(feed[s.name], perm))
                    for s, (name, perm, _) in zip(source.inputs, inputs)})
    except Exception as e:  # noqa: BLE001
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)[:300]
        raise ConversionError(edge, f"the NHWC SavedModel does not run: {first}") from None
    got = {k: v.numpy() for k, v in got.items()}
    perms = {}
    for i, name in enumerate(source.outputs):
        key = _find(list(got), name, i, edge, "output")
        a, ref = got[key], want[name]
        best = max(((perm, _cosine(np.transpose(a, perm), ref)) for perm in {tuple(range(a.ndim)), channels_first(a.ndim)}
                    if np.transpose(a, perm).shape == ref.shape), key=lambda pc: pc[1], default=(None, -1.0))
        if best[0] is None or best[1] < MIN_COSINE:
            raise ConversionError(edge, f"output '{name}' of the NHWC model does not match ONNX Runtime in any layout "
                                  f"(shape {list(a.shape)} vs {list(ref.shape)}, best cosine {best[1]:.4f}).")
        if list(best[0]) != sorted(best[0]):
            perms[key] = best[0]
    return perms


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def _find(names: list, want: str, index: int, edge: str, what: str) -> str:
    """A name as onnx2tf kept it: exact, then sanitized (':', '/' and '.' -> '_'), then the only one."""
    if want in names:
        return want
    clean = lambda n: n.replace(":", "_").replace("/", "_").replace(".", "_").lower()  # noqa: E731
    close = [n for n in names if clean(n) == clean(want)]
    if len(close) == 1:
        return close[0]
    if len(names) == 1 and index == 0:
        return names[0]
    raise ConversionError(edge, f"onnx2tf's model has no {what} for '{want}' (it has {names}).")
