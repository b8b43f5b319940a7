"""A real edge failing on a real model: onnx2tf cannot convert ReduceL2 (F.normalize), so the
planner falls back to torch -> litert-torch -> TFLite and the manifest says why."""
import textwrap

import pytest

from edgekit.core.convert import convert
from edgekit.core.data import load_data
from edgekit.core.pipeline import measure
from edgekit.backends.torch.reference import TorchReference
from edgekit.core.sources import load_source
from edgekit.core.specs import get_target

pytestmark = pytest.mark.tflite


def test_onnx2tf_failure_falls_back_to_litert_torch(tmp_path):
    from tests.conftest import ROOT

    model = tmp_path / "normed.py"
    model.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / 'examples')!r})
        import digits_cnn

        class Normed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = digits_cnn.build()[0]

            def forward(self, x):
                return torch.nn.functional.normalize(self.body(x), dim=-1)

        def build():
            return Normed().eval(), {{"x": torch.zeros(1, 1, 8, 8)}}
    """))
    source = load_source(f"{model}:build")
    data = load_data("digits", source.inputs)
    target = get_target("tflite")
    result = convert(source, target, data, tmp_path / "out")
    m = result.manifest
    assert [s["edge"] for s in m["route"]] == ["TfliteFromTorch"]
    failed = [f["edge"] for f in m["routes_failed"]]
    assert failed[0] == "SavedModelFromOnnx" and "onnx2tf failed" in m["routes_failed"][0]["error"]
    ref = TorchReference(source).outputs(data.eval)
    rec = measure(result.artifact, "litert", data, ref, target.tolerance, bench=None)
    assert rec["parity"]["passed"], rec["parity"]["failures"]


def test_litert_torch_static_int8_gives_int8_io(digits_source, digits_data, tmp_path):
    from edgekit.backends.tflite.kernels import float_kernels, io_types

    result = convert(digits_source, get_target("tflite-int8-io"), digits_data, tmp_path / "out")
    # onnx2tf's route is cheaper and serves int8 I/O as well; litert-torch is there when it fails
    assert result.manifest["route"][-1]["edge"] in ("TfliteFromSavedModel", "TfliteFromTorch")
    from edgekit.backends.tflite.from_torch import TfliteFromTorch
    from edgekit.core.graph import ConvertContext, Artifact

    out = tmp_path / "direct"
    out.mkdir()
    ctx = ConvertContext(get_target("tflite-int8-io"), get_target("tflite-int8-io").recipe_spec, digits_source,
                         digits_data)
    path = TfliteFromTorch().convert(Artifact("torch", digits_source.digest, None, digits_source.obj), out, ctx)
    assert io_types(path) == {"inputs": ["int8"], "outputs": ["int8"]}
    assert float_kernels(path) == []
    ref = TorchReference(digits_source).outputs(digits_data.eval)
    t = get_target("tflite-int8-io")
    rec = measure(path, "litert", digits_data, ref, t.tolerance, bench=None)
    assert rec["parity"]["passed"] and abs(rec["parity"]["task_delta_points"]) <= 1.0
