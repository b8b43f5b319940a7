"""onnx2tf in its default NHWC layout as a second route, wrapped to take the source's NCHW inputs.

The model: the digits CNN with a second, 4-D output (its last feature map, NCHW), so that both ends
of the wrapper are exercised: the input is transposed channels-last inside the artifact and the
feature map, which onnx2tf leaves channels-last, is transposed back. The ``-k`` route is made
unavailable as on a host where it fails, and the artifact is checked against ONNX Runtime on the
450 held-out digits, in float and full integer."""
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from edgekit.core.convert import convert
from edgekit.core.data import load_data
from edgekit.core.pipeline import measure
from edgekit.core.sources import load_source
from edgekit.core.specs import get_target
from edgekit.devices import LocalDevice

pytestmark = [pytest.mark.tflite, pytest.mark.skipif(importlib.util.find_spec("onnx2tf") is None,
                                                     reason="onnx2tf is not installed (edgekit setup tflite)")]


def test_graph_lists_the_onnx_to_tflite_routes():
    r = subprocess.run([sys.executable, "-m", "edgekit", "graph", "--from", "onnx", "--to", "tflite"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "onnx -> " in ln and " via " in ln]
    vias = [ln.split(" via ")[1].strip() for ln in lines]
    assert vias[:3] == ["SavedModelFromOnnx, TfliteFromSavedModel", "SavedModelFromOnnxNhwc, TfliteFromSavedModel",
                        "TorchFromOnnx, TfliteFromTorch"], r.stdout
    assert [ln.split("cost ")[1].split()[0] for ln in lines[:3]] == ["3.0", "3.3", "5.7"]


@pytest.fixture(scope="module")
def two_outputs_onnx(tmp_path_factory):
    """The digits CNN with its last feature map as a second output, as a plain ONNX file, and ONNX
    Runtime's outputs on the held-out digits."""
    from tests.conftest import ROOT
    from edgekit.backends.onnx.reference import OnnxReference

    folder = tmp_path_factory.mktemp("nhwc")
    py = folder / "two_outputs.py"
    py.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT / 'examples')!r})
        import digits_cnn

        class TwoOutputs(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cnn = digits_cnn.build()[0]

            def forward(self, x):
                feat = self.cnn.features(x)            # N x 32 x 2 x 2 (NCHW)
                return self.cnn.classifier(feat), feat

        def build():
            return TwoOutputs().eval(), {{"x": torch.zeros(1, 1, 8, 8)}}
    """))
    torch_source = load_source(f"{py}:build")
    onnx_file = convert(torch_source, get_target("onnx"), load_data("digits", torch_source.inputs),
                        folder / "export").artifact
    source = load_source(str(onnx_file))
    assert [s.shape for s in source.inputs] == [(1, 1, 8, 8)] and len(source.outputs) == 2
    data = load_data("digits", source.inputs)
    ref = OnnxReference(source, LocalDevice)
    try:
        reference = ref.outputs(data.eval)
    finally:
        ref.close()
    return source, data, reference, folder / "out"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tflite", "tflite-int8"])
def test_nhwc_route_takes_the_source_layout(name, two_outputs_onnx, monkeypatch):
    from edgekit.backends.tflite.kernels import float_kernels
    from edgekit.backends.tflite.onnx2tf import SavedModelFromOnnx

    own = SavedModelFromOnnx.unavailable.__func__
    monkeypatch.setattr(SavedModelFromOnnx, "unavailable", classmethod(
        lambda cls: "fails on this model (as -k does on some real graphs)" if cls is SavedModelFromOnnx else own(cls)))
    source, data, reference, out = two_outputs_onnx
    target = get_target(name)
    result = convert(source, target, data, out)
    m = result.manifest
    assert [s["edge"] for s in m["route"]] == ["SavedModelFromOnnxNhwc", "TfliteFromSavedModel"]
    note = " ".join(m["route"][0]["notes"])
    assert "NHWC" in note and "inputs x transposed channels-last" in note and "transposed back" in note, note
    rec = measure(result.artifact, target.runtime, data, reference, target.tolerance, bench=None)
    assert [i["shape"][1:] for i in rec["io"]["inputs"]] == [[1, 8, 8]]  # the source's NCHW input
    p = rec["parity"]
    assert p["passed"], p["failures"]
    assert p["n"] == 450 and abs(p["task_delta_points"]) <= 1.0
    assert all(o["cosine_mean"] > (0.9999 if target.recipe == "none" else 0.98) for o in p["outputs"]), p["outputs"]
    if target.recipe == "int8-static":
        assert float_kernels(result.artifact) == []


def _scalar_constant_model(path):
    """x + 3 (a scalar Constant node, as paddle2onnx writes them) on a 1x8x8x8 tensor: onnx2tf's accuracy
    correction fails on it in both layouts ("Output tensors of a Functional model must be the output of a
    TensorFlow Layer ... Found: 3.0") unless the constant is an initializer."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    three = numpy_helper.from_array(np.array(3.0, np.float32), "three")
    nodes = [helper.make_node("Constant", [], ["three"], value=three),
             helper.make_node("Add", ["x", "three"], ["a"]),
             helper.make_node("Conv", ["a", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "three"], ["r3"]),
             helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    inits = [numpy_helper.from_array((0.2 * rng.standard_normal((8, 8, 3, 3))).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b")]
    graph = helper.make_graph(nodes, "scalar_constant", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                      [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_scalar_constant_nodes_no_longer_fail_onnx2tf(tmp_path):
    from edgekit.core.data import random_dataset
    from edgekit.backends.onnx.reference import OnnxReference

    source = load_source(str(_scalar_constant_model(tmp_path / "scalar_constant.onnx")))
    data = random_dataset(source.inputs, n_calib=16, n_eval=32).check_against(source.inputs)
    ref = OnnxReference(source, LocalDevice)
    try:
        reference = ref.outputs(data.eval)
    finally:
        ref.close()
    target = get_target("tflite")
    result = convert(source, target, data, tmp_path / "out")
    route = result.manifest["route"]
    assert [s["edge"] for s in route] == ["SavedModelFromOnnx", "TfliteFromSavedModel"], result.manifest
    assert "1 Constant nodes as initializers" in route[0]["notes"][0]
    rec = measure(result.artifact, target.runtime, data, reference, target.tolerance, bench=None)
    assert rec["parity"]["passed"], rec["parity"]["failures"]
