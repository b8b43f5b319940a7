"""An ONNX file with no Python source behind it converts to every target."""
import shutil

import pytest

from edgekit.core.convert import convert
from edgekit.core.data import load_data
from edgekit.devices import LocalDevice
from edgekit.core.pipeline import measure
from edgekit.backends.onnx.reference import OnnxReference
from edgekit.core.sources import load_source
from edgekit.core.specs import get_target

ONNX_TARGETS = ["onnx", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8"]
TFLITE_TARGETS = ["tflite", "tflite-fp16", "tflite-int8-dynamic", "tflite-int8", "tflite-int8-io"]


@pytest.fixture(scope="module")
def onnx_only(tmp_path_factory, digits_source, digits_data):
    """Export once, then forget the Python: copy the file elsewhere and load it as a plain ONNX file."""
    folder = tmp_path_factory.mktemp("plain")
    art = convert(digits_source, get_target("onnx"), digits_data, folder / "export").artifact
    path = folder / "digits.onnx"
    shutil.copyfile(art, path)
    source = load_source(str(path))
    data = load_data("digits", source.inputs)
    ref = OnnxReference(source, LocalDevice)
    try:
        reference = ref.outputs(data.eval)
    finally:
        ref.close()
    return source, data, reference, folder / "out"


@pytest.mark.parametrize("name", [pytest.param(t, marks=pytest.mark.onnx) for t in ONNX_TARGETS] +
                         [pytest.param(t, marks=pytest.mark.tflite) for t in TFLITE_TARGETS])
def test_plain_onnx_converts_to_every_target(name, onnx_only):
    source, data, reference, out = onnx_only
    assert source.format == "onnx" and source.obj is None
    target = get_target(name)
    result = convert(source, target, data, out)
    assert result.manifest["source"]["format"] == "onnx"
    assert all(not s["edge"].startswith("OnnxFromTorch") for s in result.manifest["route"])
    rec = measure(result.artifact, target.runtime, data, reference, target.tolerance, bench=None)
    assert rec["parity"]["passed"], rec["parity"]["failures"]
