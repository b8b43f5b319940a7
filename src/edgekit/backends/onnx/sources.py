"""ONNX sources: an ``.onnx`` file, checked, its inputs read from the graph."""
from __future__ import annotations

from pathlib import Path

from ...core.artifacts import size_bytes
from ...core.errors import CorruptModel
from ...core.lazy import require
from ...core.signature import TensorSpec
from ...core.sources import Source, file_digest, override_specs


def load(spec: str, path: Path, input_specs) -> Source:
    return _onnx(path, input_specs)


ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 3: "int8", 2: "uint8", 9: "bool"}


def _onnx(path: Path, input_specs) -> Source:
    onnx = require("onnx", "onnx", "An ONNX source")
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as e:
        first = (str(e).strip().splitlines() or ["unreadable"])[0][:200]
        raise CorruptModel(f"'{path}' is not a valid ONNX model ({first}).",
                           "Re-export it; the file may be truncated.") from None
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        # some exporters (paddle2onnx) write a dynamic dimension as dim_value -1
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                     for d in t.shape.dim)
        specs.append(TensorSpec(i.name, dims, ONNX_DTYPES.get(t.elem_type, "float32")))
    if input_specs:
        specs = override_specs(specs, input_specs, path)
    outputs = [o.name for o in model.graph.output]
    return Source(str(path), "onnx", path.stem, file_digest(path), specs, outputs, path, size_bytes=size_bytes(path))
