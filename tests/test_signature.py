import numpy as np
import pytest

from edgekit.core.errors import ShapeMismatch, UserError
from edgekit.core.signature import TensorSpec, parse_input_spec


def test_parse_input_spec():
    s = parse_input_spec("images:1x3x224x224:float32")
    assert s == TensorSpec("images", (1, 3, 224, 224), "float32")
    s = parse_input_spec("ids:?x128:int64")
    assert s.shape == (None, 128) and s.dtype == "int64"
    assert parse_input_spec("x:batchx8").shape == ("batch", 8)
    for bad in ("x", "x:1x2:float128", ":1x2"):
        with pytest.raises(UserError):
            parse_input_spec(bad)


def test_check_shapes_and_dtypes():
    spec = TensorSpec("x", (1, 1, 8, 8), "float32")
    spec.check(np.zeros((5, 1, 8, 8), np.float32))  # batch axis is free
    with pytest.raises(ShapeMismatch, match="'x'.*1x1x8x8"):
        spec.check(np.zeros((5, 1, 9, 9), np.float32))
    with pytest.raises(ShapeMismatch, match="rank 4"):
        spec.check(np.zeros((5, 64), np.float32))
    with pytest.raises(ShapeMismatch, match="dtype"):
        TensorSpec("ids", (1, 8), "int64").check(np.zeros((2, 8), np.float32))
