"""Shape buckets: the target option ``buckets`` ("16,32,64", or a list in a target file) asks for an artifact
specialised to several lengths of the sequence axis (axis 1) of every input whose axis-1 length is the
source's fixed length, so that short inputs do not pay for the longest. A runtime that opts in picks, per
sample, the smallest bucket that holds the sample's used length (``runner.runtime_base.bucket_for``)."""
from __future__ import annotations

from .errors import UserError

AXIS = 1  # the sequence axis
OPTION = "buckets"


def parse_buckets(value, inputs) -> tuple[int, ...]:
    """The bucket lengths of option ``buckets`` for a source with ``inputs`` (TensorSpecs): increasing positive
    ints, the last the source's fixed length on axis 1; a UserError (one sentence) otherwise."""
    example = "Example: --option buckets=16,32,64 (increasing lengths, the last the inputs' full length)."
    items = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    try:
        lengths = tuple(int(x) for x in items if str(x) != "")
    except (TypeError, ValueError):
        raise UserError(f"option 'buckets={value}' is not a comma-separated list of whole numbers.", example) from None
    if not lengths or any(b <= 0 for b in lengths) or any(a >= b for a, b in zip(lengths, lengths[1:])):
        raise UserError(f"option 'buckets={value}' must be increasing positive lengths.", example)
    full = {s.shape[AXIS] for s in inputs if len(s.shape) > AXIS and isinstance(s.shape[AXIS], int)}
    if lengths[-1] not in full:
        have = ", ".join(f"{s.name} {list(s.shape)}" for s in inputs)
        raise UserError(f"option 'buckets={value}' must end at the inputs' fixed length on axis {AXIS} "
                        f"({' or '.join(map(str, sorted(full))) or 'none is fixed'}; inputs: {have}).", example)
    return lengths


def bucketed(inputs, full: int) -> list[str]:
    """The names of the inputs cut to each bucket: those of length ``full`` on axis 1."""
    return [s.name for s in inputs if len(s.shape) > AXIS and s.shape[AXIS] == full]
