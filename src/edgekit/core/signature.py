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

    def layout(self, array: np.ndarray, what: str = "input") -> str:
        """How ``array`` holds samples for this tensor, decided by rank alone (never guessed):

        * ``"batch"``: same rank as the input; samples are concatenated along the model's own
          axis 0 (``[N, 3, 224, 224]`` for an input ``[?, 3, 224, 224]`` or ``[1, 3, 224, 224]``);
        * ``"stacked"``: one rank more; samples stacked on a new leading axis, each one shaped
          exactly like the input (``[N, 2, 1, 128]`` for a recurrent state ``[2, 1, 128]``, ``[N]``
          for a scalar input).

        Raises ShapeMismatch (naming both accepted layouts) otherwise, or on a wrong dtype."""
        rank = len(self.shape)
        fix = (f"Pass [N, {', '.join(_dim(d) for d in self.shape[1:])}] (samples along the model's axis 0) or "
               f"[N, {', '.join(_dim(d) for d in self.shape)}] (samples stacked on a new axis).").replace("[N, ]", "[N]")
        if array.ndim == rank and rank > 0:
            kind, own = "batch", list(zip(array.shape[1:], self.shape[1:]))
            offset = 1
        elif array.ndim == rank + 1:
            kind, own = "stacked", list(zip(array.shape[1:], self.shape))
            offset = 1
        else:
            raise ShapeMismatch(f"{what} '{self.name}' has shape {list(array.shape)} but the model expects "
                                f"{_fmt(self.shape) or 'a scalar'} (rank {rank}).", fix)
        for i, (have, want) in enumerate(own):
            if isinstance(want, int) and have != want:
                axis = i + offset
                raise ShapeMismatch(
                    f"{what} '{self.name}' has shape {list(array.shape)} but the model expects {_fmt(self.shape)} "
                    f"(axis {axis}: {have} != {want}).", fix)
        self._check_dtype(array, what)
        return kind

    def check(self, array: np.ndarray, what: str = "input") -> None:
        """Raise ShapeMismatch if ``array`` cannot feed this tensor in either layout."""
        self.layout(array, what)

    def _check_dtype(self, array: np.ndarray, what: str) -> None:
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


def _dim(d) -> str:
    return str(d) if isinstance(d, int) else "?"


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
