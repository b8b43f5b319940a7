"""Make an onnx2torch module exportable: bake what is static at a fixed input shape into Python.

onnx2torch keeps ONNX's shape arithmetic as tensors (``Reshape(x, shape_tensor)``, ``Shape`` ->
``Gather`` -> ``Concat`` chains) and its modules turn them into Python values at run time
(``torch.Size(shape)``, ``.tolist()``, ``torch.any(shape == 0)``). ``torch.export`` (which litert-torch
runs) sees those tensors as fake values and stops on a data-dependent guard. At a fixed input shape
(edgekit exports at the source's fixed shape anyway) every such value is a constant: this pass runs
the module once, records every node's value, and

* replaces modules that take a static shape-like tensor (Reshape, Expand, Tile, Slice, Pad, Resize,
  Split, TopK, dynamic-axes Squeeze/Unsqueeze) by a module that holds plain Python ints;
* folds every other static value (computed from weights and shapes only) into a buffer.

The result computes the same outputs at that shape (the caller checks it) and exports.
"""
from __future__ import annotations

import inspect
import operator

import torch
from torch import fx, nn


class _Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x):
        return torch.reshape(x, self.shape)


class _Expand(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x):
        return x.expand(self.shape)


class _Tile(nn.Module):
    def __init__(self, repeats):
        super().__init__()
        self.repeats = tuple(int(r) for r in repeats)

    def forward(self, x):
        return x.repeat(self.repeats)


class _Slice(nn.Module):
    def __init__(self, flip_dims, pos, neg):
        super().__init__()
        self.flip_dims = [int(d) for d in flip_dims]
        self.pos = tuple(_py_slice(s) for s in pos)
        self.neg = tuple(_py_slice(s) for s in neg)

    def forward(self, x):
        if self.flip_dims:
            x = torch.flip(x, dims=self.flip_dims)
        if self.pos:
            x = x[self.pos]
        if self.neg:
            x = x[self.neg]
        return x


class _Pad(nn.Module):
    def __init__(self, pads, mode, value):
        super().__init__()
        self.pads, self.mode, self.value = [int(p) for p in pads], mode, value

    def forward(self, x):
        return nn.functional.pad(x, self.pads, mode=self.mode, value=self.value)


class _Interpolate(nn.Module):
    def __init__(self, size, mode, align_corners):
        super().__init__()
        self.size, self.mode, self.align_corners = tuple(int(s) for s in size), mode, align_corners

    def forward(self, x):
        return nn.functional.interpolate(x, size=self.size, mode=self.mode, align_corners=self.align_corners)


class _Split(nn.Module):
    def __init__(self, sections, axis):
        super().__init__()
        self.sections, self.axis = [int(s) for s in sections], int(axis)

    def forward(self, x):
        return torch.split(x, self.sections, dim=self.axis)


class _TopK(nn.Module):
    def __init__(self, k, dim, largest, sorted_):
        super().__init__()
        self.k, self.dim, self.largest, self.sorted = int(k), dim, largest, sorted_

    def forward(self, x):
        top = torch.topk(x, k=self.k, dim=self.dim, largest=self.largest, sorted=self.sorted)
        return top.values, top.indices


def _py_slice(s):
    if not isinstance(s, slice):
        return s
    conv = lambda v: None if v is None else int(v)  # noqa: E731  numpy ints -> Python ints
    return slice(conv(s.start), conv(s.stop), conv(s.step))


def _ints(t) -> list[int]:
    return [int(v) for v in torch.as_tensor(t).reshape(-1).tolist()]


# onnx2torch class name -> (module, concrete arguments by forward() parameter name, concrete output) -> a new
# module that takes only the data tensor (or None: leave the node as it is).
def _reshape_like(m, a, out):
    return _Reshape(out.shape)


def _expand(m, a, out):
    return _Expand(out.shape)


def _tile(m, a, out):
    return _Tile(_ints(a["repeats"]))


def _slice(m, a, out):
    from onnx2torch.node_converters.slice import _get_slices

    axes, steps = a.get("axes"), a.get("steps")
    flip, pos, neg = _get_slices(_ints(a["starts"]), _ints(a["ends"]), None if axes is None else torch.as_tensor(axes),
                                 None if steps is None else torch.as_tensor(steps))
    return _Slice(flip, pos, neg)


def _pad(m, a, out):
    from onnx2torch.node_converters.pad import _onnx_padding_to_torch, _torch_padding_to_mode_format

    pads = _torch_padding_to_mode_format(_onnx_padding_to_torch(_ints(a["pads"])), m.mode)
    value = a.get("constant_value")
    value = 0.0 if value is None else value
    return _Pad(pads, m.mode, float(torch.as_tensor(value).reshape(-1)[0]) if m.mode == "constant" else None)


def _resize(m, a, out):
    from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

    inner = getattr(m, "_resize", m)  # OnnxResizeV10 wraps an OnnxResize
    mode = _onnx_mode_to_torch_mode(inner.onnx_mode, out.dim() - 2)
    return _Interpolate(out.shape[2:], mode, inner.align_corners)


def _split(m, a, out):
    if a.get("split") is None:
        return None
    return _Split(_ints(a["split"]), m.axis)


def _topk(m, a, out):
    return _TopK(_ints(a["k"])[0], m.dim, m.largest, m.sorted)


HANDLERS = {
    "OnnxReshape": _reshape_like, "OnnxUnsqueezeDynamicAxes": _reshape_like, "OnnxSqueezeDynamicAxes": _reshape_like,
    "OnnxExpand": _expand, "OnnxTile": _tile, "OnnxSlice": _slice, "OnnxPadDynamic": _pad,
    "OnnxResize": _resize, "OnnxResizeV10": _resize, "OnnxSplit13": _split, "OnnxTopK": _topk,
}
SHAPE_OPS = {"OnnxShape"}  # their value is fixed by the input shapes, not the input data


def _node_inputs(node: fx.Node) -> list[fx.Node]:
    return list(node.all_input_nodes)


def set_outputs(gm: fx.GraphModule, model) -> None:
    """Return exactly the ONNX graph's outputs, in order: onnx2torch returns whole nodes (both outputs
    of a TopK or Split whose one output is a graph output). Raises KeyError for an output that is no
    node's (a graph input or an initializer)."""
    from onnx2torch.onnx_graph import OnnxGraph

    graph = OnnxGraph(model.graph)
    by_target = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    output = next(n for n in gm.graph.nodes if n.op == "output")
    outs = []
    with gm.graph.inserting_before(output):
        for name in graph.output_values:
            node, index = graph.value_as_node_output(name)
            value = by_target[node.unique_name]
            if len(node.output_values) > 1:
                value = gm.graph.call_function(operator.getitem, (value, index))
            outs.append(value)
    output.args = (outs[0] if len(outs) == 1 else tuple(outs),)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def specialize(gm: fx.GraphModule, example: tuple) -> tuple[fx.GraphModule, dict]:
    """Rewrite ``gm`` in place for inputs shaped like ``example``; returns it and a count of what changed."""
    rec = fx.Interpreter(gm, garbage_collect_values=False)
    with torch.no_grad():
        rec.run(*example)
    env = rec.env
    modules = dict(gm.named_modules())
    static: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            static.add(node)
        elif node.op == "call_module" and type(modules[node.target]).__name__ in SHAPE_OPS:
            static.add(node)
        elif node.op in ("call_module", "call_function", "call_method"):
            if all(n in static for n in _node_inputs(node)):
                static.add(node)
    counts = {"rewritten": 0, "folded": 0}
    # 1. modules that read a static shape-like tensor as Python values: give them the values
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node in static:
            continue
        module = modules[node.target]
        handler = HANDLERS.get(type(module).__name__)
        if handler is None or not node.args or any(a not in static for a in _node_inputs(node) if a is not node.args[0]):
            continue
        bound = inspect.signature(module.forward).bind(*node.args, **node.kwargs)
        new = handler(module, {k: _value(v, env) for k, v in bound.arguments.items()}, env[node])
        if new is None:
            continue
        gm.add_submodule(node.target, new)
        node.args, node.kwargs = (node.args[0],), {}
        counts["rewritten"] += 1
    # 2. every other static value a dynamic node (or the output) reads becomes a constant
    for i, node in enumerate(list(gm.graph.nodes)):
        if node not in static or node.op == "get_attr":
            continue
        users = [u for u in node.users if u not in static]
        if not users:
            continue
        value = env[node]
        if isinstance(value, torch.Tensor):
            name = f"_edgekit_folded_{i}"
            gm.register_buffer(name, value.detach().clone())
            with gm.graph.inserting_before(node):
                const = gm.graph.get_attr(name)
            for u in users:
                u.replace_input_with(node, const)
        elif isinstance(value, (int, float, bool)):
            for u in users:
                u.args = tuple(value if a is node else a for a in u.args)
                u.kwargs = {k: (value if v is node else v) for k, v in u.kwargs.items()}
        else:
            continue
        counts["folded"] += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    _drop_unused_buffers(gm)
    gm.graph.lint()
    gm.recompile()
    return gm, counts


def _value(arg, env):
    return env[arg] if isinstance(arg, fx.Node) else arg


def _drop_unused_buffers(gm: fx.GraphModule) -> None:
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            delattr(mod, attr)


