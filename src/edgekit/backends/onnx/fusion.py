"""ONNX Runtime's transformer graph fusions as a recipe step: the offline optimizer
(``onnxruntime.transformers.optimizer``) rewrites attention blocks, GELU, LayerNorm and residual +
LayerNorm into ORT's fused kernels (com.microsoft Attention, BiasGelu, SkipLayerNormalization, ...).
The head count and hidden size that attention fusion needs are read from the graph's weights: the
query projection is [hidden, hidden] and the model's config is not at hand, so every divisor head
size from 64 down is tried until attention fuses."""
from __future__ import annotations

from pathlib import Path

from ...core.lazy import quiet_frameworks

HEAD_SIZES = (64, 32, 128, 16)


def _hidden(model) -> int:
    """The most common square [h, h] MatMul weight (the attention projections), or 0."""
    from collections import Counter

    inits = {i.name: i for i in model.graph.initializer}
    sizes = Counter()
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            dims = list(inits[n.input[1]].dims)
            if len(dims) == 2 and dims[0] == dims[1]:
                sizes[dims[0]] += 1
    return sizes.most_common(1)[0][0] if sizes else 0


def fuse(src: Path, dst: Path) -> dict:
    """Write the fused model to ``dst``; returns {fused op: count} (only those that fused)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    hidden = _hidden(onnx.load(str(src), load_external_data=False))
    best, stats = None, {}
    tries = [(hidden // h, hidden) for h in HEAD_SIZES if hidden and hidden % h == 0] or [(0, 0)]
    for heads, size in tries:
        with quiet_frameworks("onnxruntime", "fusion_base", "onnx_model", "fusion_utils"):
            opt = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=size, opt_level=0)
        got = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        if best is None or sum(got.values()) > sum(stats.values()):
            best, stats = opt, got
        if got.get("Attention") or got.get("MultiHeadAttention"):
            break
    best.save_model_to_file(str(dst))
    return stats
