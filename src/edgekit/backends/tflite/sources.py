"""TFLite sources: a ``.tflite`` file, its inputs and outputs read from its first signature (the names
the data uses), or from the interpreter's tensors when it has none."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.artifacts import size_bytes
from ...core.errors import CorruptModel
from ...core.lazy import require
from ...core.signature import TensorSpec
from ...core.sources import Source, file_digest, override_specs


def load(spec: str, path: Path, input_specs) -> Source:
    litert = require("ai_edge_litert.interpreter", "tflite", "A TFLite source")
    try:
        interp = litert.Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or ["unreadable"])[0][:200]
        raise CorruptModel(f"'{path}' is not a valid TFLite model ({first}).",
                           "Convert it again; the file may be truncated.") from None
    sigs = interp.get_signature_list()
    if sigs:
        runner = interp.get_signature_runner(next(iter(sigs)))
        ins, outs = runner.get_input_details(), list(runner.get_output_details())
    else:
        ins = {d["name"]: d for d in interp.get_input_details()}
        outs = [d["name"] for d in interp.get_output_details()]
    specs = [TensorSpec(name, tuple(int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"])),
                        np.dtype(d["dtype"]).name) for name, d in ins.items()]
    if input_specs:
        specs = override_specs(specs, input_specs, path)
    return Source(str(path), "tflite", path.stem, file_digest(path), specs, outs, path, size_bytes=size_bytes(path))
