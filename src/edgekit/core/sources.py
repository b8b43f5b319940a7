"""Sources: what the user points edgekit at, loaded into one :class:`Source`.

PyTorch: ``file.py:callable`` or ``pkg.module:callable`` returning an ``nn.Module`` or
``(module, example_inputs)``; TorchScript archives; ``torch.export`` ``.pt2`` files.
ONNX files. TF SavedModel folders and ``.keras`` files. Pickled torch files are refused.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import CorruptModel, ShapeMismatch, SourceNotFound, UserError
from .lazy import require
from .signature import TensorSpec


@dataclass
class Source:
    spec: str
    format: str  # torch | onnx | savedmodel | keras
    name: str
    digest: str
    inputs: list[TensorSpec]
    outputs: list[str]
    path: Path | None = None
    obj: Any = None  # the live torch module for torch sources
    example: dict = field(default_factory=dict)  # name -> numpy example input (batch 1)

    def describe(self) -> str:
        ins = ", ".join(f"{s.name}:{'x'.join(str(d) for d in s.shape)}:{s.dtype}" for s in self.inputs)
        return f"{self.spec} [{self.format}] inputs {ins} -> outputs {', '.join(self.outputs)}"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def import_callable(spec: str) -> Callable:
    """``path/to/file.py:fn`` or ``package.module:fn`` -> the callable."""
    mod_part, _, attr = spec.rpartition(":")
    if not mod_part or not attr:
        raise UserError(f"'{spec}' is not MODULE:CALLABLE.", "Example: examples/digits_cnn.py:build")
    if mod_part.endswith(".py"):
        path = Path(mod_part)
        if not path.exists():
            raise SourceNotFound(f"Model file '{path}' does not exist.", "Check the path.")
        name = "edgekit_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        if name not in sys.modules:
            spec_obj = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[name] = module
            try:
                spec_obj.loader.exec_module(module)
            except Exception:
                del sys.modules[name]
                raise
        module = sys.modules[name]
    else:
        try:
            module = importlib.import_module(mod_part)
        except ModuleNotFoundError as e:
            raise SourceNotFound(f"Python module '{mod_part}' cannot be imported ({e}).",
                                 "Pass a file path (file.py:fn) or install the package.") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise UserError(f"'{mod_part}' has no attribute '{attr}'.",
                        f"Callables there: {', '.join(n for n in dir(module) if not n.startswith('_'))[:200]}.")
    return fn


def load_source(spec: str, input_specs: list[TensorSpec] | None = None) -> Source:
    path = Path(spec)
    if path.exists():
        if path.is_dir():
            if (path / "saved_model.pb").exists():
                return _savedmodel(path, input_specs)
            raise UserError(f"Folder '{spec}' is not a TF SavedModel (no saved_model.pb).")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return _onnx(path, input_specs)
        if suffix == ".keras":
            return _keras(path, input_specs)
        if suffix == ".pt2":
            return _pt2(path, input_specs)
        if suffix in (".pt", ".pth", ".ts", ".torchscript"):
            return _torchscript(path, input_specs)
        if suffix == ".py":
            raise UserError(f"'{spec}' is a Python file; name the callable that builds the model.",
                            f"Example: {spec}:build")
        raise UserError(f"'{spec}' has an unknown model format '{suffix}'.",
                        "Pass .onnx, .pt2, a TorchScript file, a SavedModel folder, .keras, or file.py:callable.")
    if ":" in spec:
        file_part = spec.rpartition(":")[0]
        if file_part.endswith(".py") and not Path(file_part).exists():  # say so before importing torch
            raise SourceNotFound(f"Model file '{file_part}' does not exist.", "Check the path.")
        return _torch_callable(spec, input_specs)
    raise SourceNotFound(f"Model '{spec}' does not exist.", "Check the path, or pass file.py:callable.")


# ------------------------------------------------------------------ torch

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
    return Source(spec, "torch", name, digest, specs, outputs, None, module, ex)


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


# ------------------------------------------------------------------ onnx

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
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        specs.append(TensorSpec(i.name, dims, ONNX_DTYPES.get(t.elem_type, "float32")))
    if input_specs:
        specs = _override(specs, input_specs, path)
    outputs = [o.name for o in model.graph.output]
    return Source(str(path), "onnx", path.stem, file_digest(path), specs, outputs, path)


def _override(found: list[TensorSpec], given: list[TensorSpec], where) -> list[TensorSpec]:
    by_name = {s.name: s for s in given}
    unknown = set(by_name) - {s.name for s in found}
    if unknown:
        raise UserError(f"--input names {sorted(unknown)} are not inputs of '{where}' "
                        f"(it has {[s.name for s in found]}).", "Use the model's input names.")
    return [_merge(s, by_name[s.name], where) if s.name in by_name else s for s in found]


def _merge(model: TensorSpec, given: TensorSpec, where) -> TensorSpec:
    """``--input`` may fix a dynamic dim of a model input, not contradict what the model declares."""
    fmt = lambda shape: "x".join(str(d) if isinstance(d, int) else "?" for d in shape)  # noqa: E731
    fix = f"Pass --input {model.name}:{fmt(model.shape)}:{model.dtype} (a '?' may be fixed to a size), or drop it."
    if model.shape and len(given.shape) != len(model.shape):
        raise ShapeMismatch(f"--input gives '{model.name}' rank {len(given.shape)} ({fmt(given.shape)}) but "
                            f"'{where}' declares rank {len(model.shape)} ({fmt(model.shape)}).", fix)
    dims = []
    for i, (want, have) in enumerate(zip(model.shape, given.shape)):
        if isinstance(want, int) and isinstance(have, int) and want != have:
            raise ShapeMismatch(f"--input gives '{model.name}' shape {fmt(given.shape)} but '{where}' declares "
                                f"{fmt(model.shape)} (axis {i}: {have} != {want}).", fix)
        dims.append(want if isinstance(want, int) else have)
    # the model's declared dtype wins: --input's dtype defaults to float32 when left out
    return TensorSpec(model.name, tuple(dims) if model.shape else given.shape, model.dtype)


# ------------------------------------------------------------------ tensorflow

def _tf_specs(signature) -> tuple[list[TensorSpec], list[str]]:
    _, kw = signature.structured_input_signature
    ins = [TensorSpec(n, tuple(s.shape.as_list()), s.dtype.name) for n, s in sorted(kw.items())]
    outs = sorted(signature.structured_outputs)
    return ins, outs


def _savedmodel(path: Path, input_specs) -> Source:
    tf = require("tensorflow", "tflite", "A SavedModel source")
    try:
        loaded = tf.saved_model.load(str(path))
        sig = loaded.signatures["serving_default"]
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded as a SavedModel ({str(e).splitlines()[0][:200]}).") from None
    ins, outs = _tf_specs(sig)
    return Source(str(path), "savedmodel", path.name, file_digest(path), _override(ins, input_specs or [], path) if
                  input_specs else ins, outs, path)


def _keras(path: Path, input_specs) -> Source:
    require("tensorflow", "tflite", "A Keras source")
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded as a Keras model ({str(e).splitlines()[0][:200]}).") from None
    ins = [TensorSpec(t.name.split(":")[0], tuple(t.shape), t.dtype if isinstance(t.dtype, str) else t.dtype.name)
           for t in model.inputs]
    outs = [f"output_{i}" for i in range(len(model.outputs))]
    return Source(str(path), "keras", path.stem, file_digest(path), input_specs or ins, outs, path, model)
