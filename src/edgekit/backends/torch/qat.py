"""Quantization-aware training (recipe kind ``qat``): the source is exported (``torch.export``, batch
dimension dynamic) and given fake quantization where an int8 runtime quantizes: torchao's PT2E
``prepare_qat_pt2e`` with its quantizer of XNNPACK's kind (weights symmetric int8 per output
channel in [-127, 127], activations int8 per tensor, observed as training runs). The model is
fine-tuned through the fake quantization (train_loop.py: labels where the data has them plus KL to
the float source's outputs, else the source's outputs), so its weights learn to sit well on the
int8 grid and the activations it produces to survive their rounding.

Then the learned model is folded back into a plain float module of the source's own class: the
fine-tuned weights, each quantized weight snapped to the symmetric per-channel grid the int8
converters compute from it (scale = max|w| / 127 per output channel, what ONNX Runtime's and the
TFLite converter's per-channel quantization choose), so their weight quantization reproduces the
learned int8 weights exactly. The activation ranges learned during training are not carried over:
the int8 edges calibrate the folded model on the data's calibration samples as they calibrate any
source (min/max over the same kind of samples the observers saw)."""
from __future__ import annotations

import copy

from .train_edges import _TrainingEdge

MECHANISM = ("PT2E fake quantization (torchao prepare_qat_pt2e, XNNPACK-style: int8 symmetric per-channel "
             "weights, int8 per-tensor activations), fine-tuned, folded into the float module with every "
             "quantized weight snapped to its per-channel int8 grid; activation ranges recalibrated by the int8 edge")


def _quantizer():
    import warnings

    with warnings.catch_warnings():  # "XNNPACKQuantizer is deprecated!" (its ExecuTorch copy is not)
        warnings.simplefilter("ignore")
        from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    class Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            return _scalars_to_attrs(model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def _scalars_to_attrs(model):
    """The quantizer's own pass (scalar operands of add/mul become tensors it can observe), for float
    additions only: torchao 0.18 makes every scalar a float tensor, and an integer position index
    (``arange(64) + 0`` in a BERT attention mask) turned float breaks the model (IndexError)."""
    import torch

    n_const = 0
    for node in list(model.graph.nodes):
        val = node.meta.get("val")
        if (node.op != "call_function" or node.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)
                or not isinstance(val, torch.Tensor) or not val.dtype.is_floating_point):
            continue
        args = []
        for a in node.args:
            if isinstance(a, torch.fx.Node):
                args.append(a)
                continue
            while hasattr(model, f"_qat_scalar_{n_const}"):
                n_const += 1
            name, value = f"_qat_scalar_{n_const}", torch.tensor(float(a))
            model.register_buffer(name, value)
            with model.graph.inserting_before(node):
                attr = model.graph.create_node("get_attr", name, (), {})
                attr.meta["val"] = val.fake_mode.from_tensor(value, static_shapes=True)
            args.append(attr)
        node.args = tuple(args)
    model.recompile()
    return model


def prepare_fake_quant(teacher, example: tuple):
    """(the source with fake quantization inserted, a GraphModule that trains; what was quantized)."""
    import logging
    import warnings

    import torch

    from ...core.lazy import require

    require("torchao", "qat", "Quantization-aware training")
    level = logging.getLogger("torchao").level
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization.pt2e import allow_exported_model_train_eval
            from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

            model = copy.deepcopy(teacher).eval()
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            args = tuple(torch.cat([t, t]) for t in example)  # batch 2: the batch dimension stays dynamic
            program = torch.export.export(model, args, dynamic_shapes=tuple({0: batch} for _ in args))
            graph = prepare_qat_pt2e(program.module(), _quantizer())
    finally:
        logging.getLogger("torchao").setLevel(level)
    allow_exported_model_train_eval(graph)  # .train()/.eval() switch dropout (and batch norm) in the graph
    weights, acts = fake_quantized(graph)
    for node in graph.graph.nodes:
        arg = node.args[0] if node.op == "call_module" and node.args else None
        if str(node.target).startswith("activation_post_process") and getattr(arg, "op", None) != "get_attr":
            graph.get_submodule(node.target).register_forward_pre_hook(_keep_huge_float)
    return graph, {"mechanism": MECHANISM, "weights_quantized": sorted(weights), "activation_quantizers": acts}


HUGE = 1e6  # an activation beyond this is a constant, not a value (an additive mask's -3.4e38)


def _keep_huge_float(module, args):
    """An activation holding a huge constant (an attention mask's "minus infinity") stays float: one
    int8 scale over it would crush every real value (what ``edgekit diagnose`` lists as never to quantize)."""
    x = args[0]
    if module.fake_quant_enabled[0] and bool((x.detach().abs() > HUGE).any()):
        module.disable_fake_quant()
        module.disable_observer()


def fake_quantized(graph) -> tuple[dict, int]:
    """({weight name: its fake-quant module}, the number of activation fake-quant points)."""
    weights, acts = {}, 0
    params = {name for name, _ in graph.named_parameters()}  # not the scalar operands made tensors
    for node in graph.graph.nodes:
        if node.op != "call_module" or not str(node.target).startswith("activation_post_process"):
            continue
        arg = node.args[0] if node.args else None
        if getattr(arg, "op", None) == "get_attr":
            if str(arg.target) in params:
                weights[str(arg.target)] = graph.get_submodule(node.target)
        else:
            acts += 1
    return weights, acts


def snap(weight, axis: int, qmin: int = -127, qmax: int = 127):
    """``weight`` on its symmetric per-channel int8 grid (scale max|w| / qmax per channel along ``axis``)."""
    import torch

    dims = [d for d in range(weight.dim()) if d != axis]
    amax = weight.abs().amax(dim=dims, keepdim=True) if dims else weight.abs()
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return torch.clamp(torch.round(weight / scale), qmin, qmax) * scale


def fold(graph, teacher) -> tuple[object, dict]:
    """A copy of ``teacher`` (a plain module) holding ``graph``'s trained weights, the quantized ones
    snapped to their int8 grid."""
    import torch

    weights, _ = fake_quantized(graph)
    trained = graph.state_dict()
    model = copy.deepcopy(teacher).eval()
    state = model.state_dict()
    unused = [k for k in state if k not in trained]  # torch.export drops what the outputs never read
    if len(unused) == len(state) or any(k not in state for k in weights):
        from ...core.errors import ConversionError

        raise ConversionError("QuantAwareTraining", "the trained graph's tensors do not carry the source's names.",
                              "Report it: the source's parameters did not keep their names through torch.export.")
    moved = 0.0
    with torch.no_grad():
        for key in [k for k in state if k in trained]:
            value = trained[key].detach().clone()
            if key in weights:
                fq = weights[key]
                snapped = snap(value, int(getattr(fq, "ch_axis", 0)), int(fq.quant_min), int(fq.quant_max))
                moved = max(moved, float((snapped - value).abs().max() / value.abs().max().clamp_min(1e-12)))
                value = snapped
            state[key] = value
    model.load_state_dict(state)
    return model, {"weights_snapped": len(weights), "snap_max_relative_change": round(moved, 6),
                   "unused_kept": unused}


class QuantAwareTraining(_TrainingEdge):
    """Fake-quant fine-tuning (see the module's text), the result a plain float module whose weights
    are already int8-exact: convert it to an int8 target (``onnx-int8@qat-int8``, ``tflite-int8@qat-int8``)."""

    src, dst = "torch", "torch"
    recipes = frozenset({"qat"})
    requires = (("torch", "torch"), ("torchao", "qat"))
    tools = ("torch", "torchao")

    def student(self, teacher, example, settings):
        graph, changes = prepare_fake_quant(teacher, example)
        if not settings.train_embeddings:  # the token tables (int8 edges keep embeddings float or gather them)
            for node in graph.graph.nodes:
                if node.op == "call_function" and "embedding" in str(node.target):
                    table = node.args[0]
                    if getattr(table, "op", None) == "get_attr":
                        graph.get_parameter(str(table.target)).requires_grad_(False)
        self._teacher = teacher
        return graph, changes

    def finish(self, student, changes):
        model, folded = fold(student, self._teacher)
        changes.update(folded)
        return model
