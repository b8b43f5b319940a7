"""Input/output signatures: names, shapes (with dynamic dims), dtypes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ShapeMismatch, UserError

DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints; None (or a str naming the dim) for a dynamic dim
    dtype: str = "float32"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))

    def fixed_shape(self, batch: int = 1) -> tuple[int, ...]:
        return tuple(batch if i == 0 and not isinstance(s, int) else (s if isinstance(s, int) else 1)
                     for i, s in enumerate(self.shape))

    def check(self, array: np.ndarray, what: str = "input") -> None:
        """Raise ShapeMismatch if a batch of ``array`` cannot feed this tensor."""
        if array.ndim != len(self.shape):
            raise ShapeMismatch(
                f"{what} '{self.name}' has shape {list(array.shape)} but the model expects rank {len(self.shape)} "
                f"{_fmt(self.shape)}.", "Pass data shaped like the model's input, or set it with --input.")
        for i, (have, want) in enumerate(zip(array.shape, self.shape)):
            if i == 0:
                continue  # the batch axis: samples are fed in batches the model accepts
            if isinstance(want, int) and have != want:
                raise ShapeMismatch(
                    f"{what} '{self.name}' has shape {list(array.shape)} but the model expects {_fmt(self.shape)} "
                    f"(axis {i}: {have} != {want}).", "Pass data shaped like the model's input, or set it with --input.")
        if not _dtype_compatible(array.dtype, self.dtype):
            raise ShapeMismatch(f"{what} '{self.name}' has dtype {array.dtype} but the model expects {self.dtype}.",
                                "Convert the data to that dtype.")


def _dtype_compatible(have: np.dtype, want: str) -> bool:
    have = np.dtype(have)
    if want in ("float32", "float16"):
        return have.kind == "f"
    if want in ("int64", "int32", "int8", "uint8"):
        return have.kind in "iu"
    return have.kind == "b" or want == str(have)


def _fmt(shape) -> str:
    return "x".join("?" if not isinstance(s, int) else str(s) for s in shape)


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``name:1x3x224x224:float32``; a dim may be ``?`` or a name (dynamic)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise UserError(f"--input '{text}' is not NAME:SHAPE[:DTYPE].", "Example: --input x:1x3x224x224:float32")
    name, shape_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in DTYPES:
        raise UserError(f"--input '{text}': unknown dtype '{dtype}'.", f"Use one of: {', '.join(DTYPES)}.")
    dims = []
    for d in shape_text.lower().split("x"):
        if d.isdigit():
            dims.append(int(d))
        elif d in ("?", "-1", "") or d.isidentifier():
            dims.append(None if d in ("?", "-1", "") else d)
        else:
            raise UserError(f"--input '{text}': bad dimension '{d}'.", "Use integers, '?' or a name for dynamic dims.")
    return TensorSpec(name, tuple(dims), dtype)
