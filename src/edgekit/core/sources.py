"""Sources: what the user points edgekit at, loaded into one :class:`Source`.

Which format a file, a folder or a ``file.py:callable`` spec is, and how to load it, is the
backends' knowledge (their ``[[formats]]``: suffixes, folder markers, loaders); this module asks the
registry, checks the path first, and keeps what every loader shares (digests, ``--input`` merging).
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

from .errors import ShapeMismatch, SourceNotFound, UserError
from .signature import TensorSpec


@dataclass
class Source:
    spec: str
    format: str  # a format name of a backend
    name: str
    digest: str
    inputs: list[TensorSpec]
    outputs: list[str]
    path: Path | None = None
    obj: Any = None  # the live object of formats held in memory (a framework's model)
    example: dict = field(default_factory=dict)  # name -> numpy example input (batch 1)
    size_bytes: int | None = None  # what a deployment of the source would carry (file size, or weights)
    # inputs whose dynamic dimensions were fixed at the data's shapes (core/shapes.py): name -> shape
    shapes_from_data: dict = field(default_factory=dict)

    def examples(self) -> dict:
        """An example (batch 1) for every input: the source's own, else zeros at the input's fixed shape."""
        return {s.name: self.example[s.name] if s.name in self.example else np.zeros(s.fixed_shape(), s.dtype)
                for s in self.inputs}

    def describe(self) -> str:
        ins = ", ".join(f"{s.name}:{'x'.join(str(d) for d in s.shape)}:{s.dtype}" for s in self.inputs)
        return f"{self.spec} [{self.format}] inputs {ins} -> outputs {', '.join(self.outputs)}"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:  # a folder's member names count; a single file is its content alone (any name, any path)
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
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
        own = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
               and getattr(v, "__module__", None) == module.__name__]  # defined there, not imported
        from .errors import did_you_mean

        hint = did_you_mean(attr, own) or (f"Callables defined there: {', '.join(own)[:200]}." if own else
                                           "It defines no callable.")
        raise UserError(f"'{mod_part}' has no callable '{attr}'.", hint)
    return fn


def load_source(spec: str, input_specs: list[TensorSpec] | None = None) -> Source:
    from ..backends import callable_format, format_of_path, formats

    path = Path(spec)
    if path.exists():
        fmt = format_of_path(path)
        if fmt is not None:
            return _hook(fmt, "loader")(spec, path, input_specs)
        if path.is_dir():
            markers = ", ".join(f.folder_marker for f in formats().values() if f.folder_marker)
            raise UserError(f"Folder '{spec}' is not a model folder edgekit knows (none of: {markers}).")
        suffix = path.suffix.lower()
        if suffix == ".py":
            raise UserError(f"'{spec}' is a Python file; name the callable that builds the model.",
                            f"Example: {spec}:build")
        known = ", ".join(s for f in formats().values() for s in f.suffixes)
        raise UserError(f"'{spec}' has an unknown model format '{suffix}'.",
                        f"Pass a model file ({known}), a model folder, or file.py:callable.")
    fmt = callable_format()
    if ":" in spec and fmt is not None:
        file_part = spec.rpartition(":")[0]
        if file_part.endswith(".py") and not Path(file_part).exists():  # say so before importing a framework
            raise SourceNotFound(f"Model file '{file_part}' does not exist.", "Check the path.")
        return _hook(fmt, "loader")(spec, None, input_specs)
    raise SourceNotFound(f"Model '{spec}' does not exist.", "Check the path, or pass file.py:callable.")


def _hook(fmt, what: str):
    from ..backends import get_backend

    return get_backend(fmt.backend).hook(getattr(fmt, what))


def override_specs(found: list[TensorSpec], given: list[TensorSpec], where) -> list[TensorSpec]:
    by_name = {s.name: s for s in given}
    unknown = set(by_name) - {s.name for s in found}
    if unknown:
        raise UserError(f"--input names {sorted(unknown)} are not inputs of '{where}' "
                        f"(it has {[s.name for s in found]}).", "Use the model's input names.")
    return [merge_spec(s, by_name[s.name], where) if s.name in by_name else s for s in found]


def merge_spec(model: TensorSpec, given: TensorSpec, where) -> TensorSpec:
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
