"""PyTorch sources: ``file.py:callable`` or ``pkg.module:callable`` returning an ``nn.Module`` or
``(module, example_inputs)``; TorchScript archives; ``torch.export`` ``.pt2`` files. A pickled
``torch.save`` file is refused: it is never unpickled."""
from __future__ import annotations

import hashlib
import inspect
import zipfile
from pathlib import Path

import numpy as np

from ...core.errors import CorruptModel, ShapeMismatch, UserError
from ...core.lazy import require
from ...core.signature import TensorSpec
from ...core.sources import Source, file_digest, import_callable, override_specs


def load(spec: str, path: Path | None, input_specs) -> Source:
    if path is None:
        return _torch_callable(spec, input_specs)
    if path.suffix.lower() == ".pt2":
        return _pt2(path, input_specs)
    return _torchscript(path, input_specs)


def _torch_callable(spec: str, input_specs) -> Source:
    torch = require("torch", "torch", "A PyTorch source")
    result = import_callable(spec)()
    example = None
    if isinstance(result, tuple) and len(result) == 2:
        result, example = result
    if not isinstance(result, torch.nn.Module):
        raise UserError(f"'{spec}' returned {type(result).__name__}, not a torch.nn.Module.",
                        "Return the module, or (module, example_inputs).")
    module = result.eval()
    file_part = spec.rpartition(":")[0]
    h = hashlib.sha256(spec.encode())
    if file_part.endswith(".py"):
        h.update(Path(file_part).read_bytes())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    name = Path(file_part).stem if file_part.endswith(".py") else file_part.rsplit(".", 1)[-1]
    return _torch_source(spec, name, h.hexdigest(), module, example, input_specs)


def _torch_source(spec, name, digest, module, example, input_specs) -> Source:
    torch = require("torch", "torch")
    if input_specs:
        ex = {s.name: _zeros(s) for s in input_specs}
        specs = list(input_specs)
    elif example is not None:
        if isinstance(example, dict):
            ex = {k: _np(v) for k, v in example.items()}
        else:
            example = example if isinstance(example, (tuple, list)) else (example,)
            params = [p for p in inspect.signature(module.forward).parameters if p not in ("self", "args", "kwargs")]
            names = params[:len(example)] if len(params) >= len(example) else [f"input_{i}" for i in range(len(example))]
            ex = {n: _np(v) for n, v in zip(names, example)}
        specs = [TensorSpec(n, tuple(a.shape), str(a.dtype)) for n, a in ex.items()]
    else:
        raise UserError(f"'{spec}' gives no example inputs, so the input shapes are unknown.",
                        "Return (module, example_inputs) from the builder, or pass --input NAME:SHAPE:DTYPE.")
    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(v) for v in ex.values()])  # positional: .pt2 modules take no kwargs
    except Exception as e:
        ins = ", ".join(f"{s.name}:{'x'.join(str(d) for d in s.shape)}:{s.dtype}" for s in specs)
        first = " ".join((str(e).strip().splitlines() or [type(e).__name__])[0].split())[:200].rstrip(".")
        if input_specs:
            raise ShapeMismatch(f"'{spec}' cannot run on inputs shaped as --input says ({ins}): {first}.",
                                "Give --input the shape and dtype the model's forward takes.") from None
        raise UserError(f"'{spec}' fails on its own example inputs ({ins}): {first}.",
                        "Fix the builder's example inputs, or pass --input NAME:SHAPE:DTYPE.") from None
    outputs = list(out.keys()) if isinstance(out, dict) else (
        ["output"] if isinstance(out, torch.Tensor) else [f"output_{i}" for i in range(len(out))])
    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())  # what a deployment carries
    return Source(spec, "torch", name, digest, specs, outputs, None, module, ex, size_bytes=weights)


def _np(v):
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _zeros(s: TensorSpec):
    return np.zeros(s.fixed_shape(), dtype=s.dtype)


def _torchscript(path: Path, input_specs) -> Source:
    torch = require("torch", "torch", "A TorchScript source")
    if not zipfile.is_zipfile(path):
        raise CorruptModel(f"'{path}' is not a TorchScript archive (a plain pickle is never loaded: it can run code).",
                           "Save the model with torch.jit.save or torch.export.save, or pass file.py:callable.")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if not any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise CorruptModel(f"'{path}' is a torch.save checkpoint, not a TorchScript model; edgekit never unpickles "
                           "those.", "Save it with torch.jit.save / torch.export.save, or pass file.py:callable.")
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded as TorchScript: {str(e).splitlines()[0]}.") from None
    return _torch_source(str(path), path.stem, file_digest(path), module, None, input_specs)


def _pt2(path: Path, input_specs) -> Source:
    if not zipfile.is_zipfile(path):  # say so before torch prints its own traceback
        raise CorruptModel(f"'{path}' is not a torch.export archive (.pt2 files are zip archives).",
                           "Save the program with torch.export.save, or pass file.py:callable.")
    torch = require("torch", "torch", "A torch.export source")
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded with torch.export.load: {str(e).splitlines()[0]}.") from None
    example = ep.example_inputs[0] if getattr(ep, "example_inputs", None) else None
    if example is None and not input_specs:
        raise UserError(f"'{path}' carries no example inputs.", "Pass --input NAME:SHAPE:DTYPE.")
    module = ep.module()
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    ex = dict(zip(names, example)) if example is not None else None
    return _torch_source(str(path), path.stem, file_digest(path), module, ex, input_specs)


def open_artifact(path: Path):
    """The live module of a torch file an edge wrote (a ``torch.export`` program or TorchScript)."""
    torch = require("torch", "torch", "A PyTorch model file")
    if path.suffix.lower() == ".pt2":
        return torch.export.load(str(path)).module()
    return torch.jit.load(str(path), map_location="cpu").eval()
