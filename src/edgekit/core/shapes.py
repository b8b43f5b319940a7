"""Shapes from the data for formats that take one shape: a model whose inputs have dynamic dimensions
past the batch (a detector's height and width, a transformer's sequence length) is converted to a
static-shape format (``static_shapes`` in its backend.toml) at the shape one sample of the user's data
has, as a user would fix it by hand (``--input``). The source keeps what was fixed in
``shapes_from_data`` (edges that read the model file, whose dimensions stay dynamic, pass it on, e.g.
onnx2tf's ``-ois``), and the manifest says the artifact takes only that shape."""
from __future__ import annotations

import dataclasses


def dynamic_past_batch(specs) -> bool:
    return any(any(not isinstance(d, int) or d < 0 for d in s.shape[1:]) for s in specs)


def data_shapes(specs, data) -> dict[str, tuple[int, ...]]:
    """Every input's shape as one sample of ``data`` gives it (batch 1), when some input has a dynamic
    dimension past its first (a dynamic batch alone converts as it is); {} without data, without such an
    input, or where the data does not give every input at the model's rank."""
    if data is None or not dynamic_past_batch(specs):
        return {}
    split = data.calib if data.n_calib else data.eval
    if not all(s.name in split and len(split[s.name]) for s in specs):
        return {}
    out = {}
    for s in specs:
        a = split[s.name]
        shape = a.shape[1:] if s.name in data.stacked else (1, *a.shape[1:])
        if len(shape) != len(s.shape):
            return {}
        out[s.name] = tuple(int(d) for d in shape)
    return out


def fixed_from_data(source, target, data):
    """``source`` with its inputs fixed at the data's shapes when ``target``'s format takes one shape
    (else ``source`` itself)."""
    from ..backends import get_format

    if not get_format(target.format).static_shapes or source.shapes_from_data:
        return source
    shapes = data_shapes(source.inputs, data)
    if not shapes:
        return source
    inputs = [dataclasses.replace(s, shape=shapes[s.name]) for s in source.inputs]
    return dataclasses.replace(source, inputs=inputs, shapes_from_data=shapes)
