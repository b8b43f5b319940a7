"""ONNX -> PyTorch (onnx2torch) and on to TFLite with litert-torch: the second ONNX -> TFLite route.

Real models, real converters: the digits CNN exported to a plain ONNX file, and a hand-built ONNX graph
whose shape arithmetic (Shape -> Gather -> Concat -> Reshape, Slice, Pad, Resize, Expand, Tile, Split,
TopK) onnx2torch keeps as tensors, which ``torch.export`` cannot trace until it is made static."""
import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgekit.core.convert import convert
from edgekit.core.data import load_data
from edgekit.core.graph import Artifact, ConvertContext, plan
from edgekit.core.pipeline import measure
from edgekit.core.sources import load_source
from edgekit.core.specs import get_target
from edgekit.devices import LocalDevice

pytestmark = [pytest.mark.onnx, pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is None,
                                                    reason="onnx2torch is not installed (edgekit setup torch)")]


def test_onnx2torch_imports_without_leaving_a_torchvision_behind():
    code = ("import sys, importlib.util\n"
            "from edgekit.backends.torch.from_onnx import import_onnx2torch, uses_stand_in\n"
            "real = importlib.util.find_spec('torchvision') is not None\n"
            "o2t = import_onnx2torch()\n"
            "assert hasattr(o2t, 'convert')\n"
            "assert uses_stand_in() != real or real\n"
            "if uses_stand_in():\n"
            "    assert 'torchvision' not in sys.modules and 'torchvision.ops' not in sys.modules\n"
            "    try:\n"
            "        import torchvision\n"
            "    except ImportError:\n"
            "        pass\n"
            "    else:\n"
            "        assert not getattr(torchvision, '_edgekit_stand_in', False)\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_plan_has_the_torch_route_after_onnx2tf():
    p = plan("onnx", get_target("tflite"))
    names = [r.names for r in p.routes]
    assert names.index(["SavedModelFromOnnx", "TfliteFromSavedModel"]) \
        < names.index(["SavedModelFromOnnxNhwc", "TfliteFromSavedModel"]) \
        < names.index(["TorchFromOnnx", "TfliteFromTorch"])
    # an ONNX source never goes back to ONNX through torch
    assert all("OnnxFromTorch" not in r.names for r in plan("onnx", get_target("onnx-int8")).routes)


def _shape_ops_model(path):
    """x: N x 4 x 6 x 6 (N dynamic) through ops whose shape inputs onnx2torch keeps as tensors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, values, dtype=np.int64):
        return numpy_helper.from_array(np.array(values, dtype), name)

    inits = [const("zero", [0]), const("minus1", [-1]), const("starts", [1]), const("ends", [3]), const("axes1", [1]),
             const("pads", [0, 0, 1, 1, 0, 0, 1, 1]), const("scales", [1, 1, 2, 2], np.float32),
             const("exp_shape", [1, 2, 3, 3]), const("reps", [1, 1, 2, 2]), const("split", [60, 84]),
             const("k", [5])]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),                       # 1 x 144
        helper.make_node("TopK", ["flat", "k"], ["top", "top_idx"], axis=-1),            # 1 x 5
        helper.make_node("Split", ["flat", "split"], ["part_a", "part_b"], axis=1),      # 1x60, 1x84
        helper.make_node("ReduceMean", ["part_b"], ["b_mean"], axes=[1], keepdims=1),    # 1 x 1
        helper.make_node("Slice", ["x", "starts", "ends", "axes1"], ["mid"]),            # 1 x 2 x 6 x 6
        helper.make_node("Pad", ["mid", "pads"], ["padded"], mode="constant"),           # 1 x 2 x 8 x 8
        helper.make_node("Resize", ["padded", "", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),  # 1 x 2 x 16 x 16
        helper.make_node("ReduceMean", ["mid"], ["m"], axes=[2, 3], keepdims=1),         # 1 x 2 x 1 x 1
        helper.make_node("Expand", ["m", "exp_shape"], ["expanded"]),                     # 1 x 2 x 3 x 3
        helper.make_node("Tile", ["expanded", "reps"], ["tiled"]),                        # 1 x 2 x 6 x 6
        helper.make_node("Mul", ["tiled", "b_mean"], ["tiled_b"]),
        helper.make_node("Cast", ["batch"], ["batch_f"], to=TensorProto.FLOAT),           # a shape value as data
        helper.make_node("Mul", ["tiled_b", "batch_f"], ["scaled"]),
    ]
    graph = helper.make_graph(
        nodes, "shape_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("top", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("up", TensorProto.FLOAT, ["N", 2, 16, 16]),
         helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N", 2, 6, 6]),
         helper.make_tensor_value_info("part_a", TensorProto.FLOAT, ["N", 60])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ort(path, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def test_shape_arithmetic_is_made_static_and_exports(tmp_path):
    import torch

    from edgekit.backends.torch.from_onnx import TorchFromOnnx

    source = load_source(str(_shape_ops_model(tmp_path / "shape_ops.onnx")))
    out = tmp_path / "edge"
    out.mkdir()
    ctx = ConvertContext(get_target("tflite"), None, source)
    path = TorchFromOnnx().convert(Artifact("onnx", source.digest, source.path), out, ctx)
    assert path.suffix == ".pt2" and "shape ops made static" in ctx.notes[0]
    module = torch.export.load(str(path)).module()  # it exported: no data-dependent guard left
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = _ort(source.path, {"x": x})
    with torch.no_grad():
        got = module(x=torch.from_numpy(x))
    for name, g in zip(source.outputs, got):
        np.testing.assert_allclose(g.numpy(), want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_unfolded_shape_chains_are_folded_too(tmp_path):
    """Without onnxsim's folding the Shape -> Gather -> Concat chain reaches the module: the pass folds it."""
    import onnx
    import torch

    from edgekit.backends.torch.from_onnx import import_onnx2torch
    from edgekit.backends.torch.onnx_static import set_outputs, specialize

    path = _shape_ops_model(tmp_path / "shape_ops.onnx")
    model = onnx.load(str(path))
    gm = import_onnx2torch().convert(model, save_input_names=True).eval()
    set_outputs(gm, model)
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        before = gm(x)
        gm, counts = specialize(gm, (x,))
        after = gm(x)
    assert counts["rewritten"] >= 7 and counts["folded"] >= 1, counts
    assert len(after) == 4
    want = _ort(path, {"x": x.numpy()})
    for name, a, b in zip(want, before, after):
        torch.testing.assert_close(a, b)
        np.testing.assert_allclose(b.numpy(), want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    torch.export.export(gm, (x,))


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory, digits_source, digits_data):
    """The digits CNN as a plain ONNX file (no Python behind it) and ONNX Runtime's outputs on the held-out set."""
    from edgekit.backends.onnx.reference import OnnxReference

    folder = tmp_path_factory.mktemp("plain")
    art = convert(digits_source, get_target("onnx"), digits_data, folder / "export").artifact
    path = folder / "digits.onnx"
    shutil.copyfile(art, path)
    source = load_source(str(path))
    assert not source.example  # an ONNX source carries no example: the route builds them from its specs
    data = load_data("digits", source.inputs)
    ref = OnnxReference(source, LocalDevice)
    try:
        reference = ref.outputs(data.eval)
    finally:
        ref.close()
    return source, data, reference, folder / "out"


@pytest.mark.tflite
@pytest.mark.parametrize("name", ["tflite", pytest.param("tflite-int8-io", marks=pytest.mark.slow)])
def test_onnx_reaches_litert_torch_when_onnx2tf_cannot(name, digits_onnx, monkeypatch):
    from edgekit.backends.tflite.onnx2tf import SavedModelFromOnnx
    from edgekit.backends.tflite.onnx2tf_nhwc import SavedModelFromOnnxNhwc

    for edge in (SavedModelFromOnnx, SavedModelFromOnnxNhwc):  # as on a host without onnx2tf
        monkeypatch.setattr(edge, "unavailable", classmethod(lambda cls: "needs 'onnx2tf' (not installed here)"))
    source, data, reference, out = digits_onnx
    target = get_target(name)
    result = convert(source, target, data, out)
    m = result.manifest
    assert [s["edge"] for s in m["route"]] == ["TorchFromOnnx", "TfliteFromTorch"]
    assert "onnx2torch" in m["route"][0]["notes"][0]
    assert any("SavedModelFromOnnx" in " ".join(r["route"]) for r in m["routes_skipped"])
    rec = measure(result.artifact, target.runtime, data, reference, target.tolerance, bench=None)
    p = rec["parity"]
    assert p["passed"], p["failures"]
    assert p["n"] == 450 and abs(p["task_delta_points"]) <= 1.0
    if target.recipe == "none":
        assert p["outputs"][0]["cosine_mean"] > 0.99999


@pytest.mark.tflite
def test_dynamic_height_and_width_are_fixed_from_the_data(digits_onnx, monkeypatch, tmp_path):
    """A model whose height and width are dynamic (a detector's, PP-OCR's), to a format that takes one
    shape: the route is walked at the data's shape (8x8 here), as a user would fix it with --input, and
    the manifest says the artifact takes only that shape. Before, onnx -> torch refused the dynamic dims."""
    import onnx

    from edgekit.backends.tflite.onnx2tf import SavedModelFromOnnx
    from edgekit.backends.tflite.onnx2tf_nhwc import SavedModelFromOnnxNhwc

    for edge in (SavedModelFromOnnx, SavedModelFromOnnxNhwc):  # the torch route alone, as on a host without onnx2tf
        monkeypatch.setattr(edge, "unavailable", classmethod(lambda cls: "needs 'onnx2tf' (not installed here)"))
    fixed, _, reference, _ = digits_onnx
    model = onnx.load(str(fixed.path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    path = tmp_path / "digits-dynamic.onnx"
    onnx.save(model, str(path))
    source = load_source(str(path))
    assert list(source.inputs[0].shape[2:]) == ["height", "width"]
    data = load_data("digits", source.inputs)
    target = get_target("tflite")
    m = convert(source, target, data, tmp_path / "out").manifest
    assert [s["edge"] for s in m["route"]] == ["TorchFromOnnx", "TfliteFromTorch"]
    assert m["inputs_fixed_from_data"] == {"x": [1, 1, 8, 8]}
    assert m["source"]["inputs"][0]["shape"][2:] == ["height", "width"]  # the source as it is
    rec = measure(tmp_path / "out" / "digits-dynamic" / "tflite" / "model.tflite", target.runtime, data, reference,
                  target.tolerance, bench=None)
    assert rec["parity"]["passed"] and rec["parity"]["outputs"][0]["cosine_mean"] > 0.99999
    # a format that takes any shape keeps the dynamic dims
    assert convert(source, get_target("onnx"), data, tmp_path / "out").manifest["inputs_fixed_from_data"] is None


def _installed_file(dist: str, rel: str):
    import importlib.metadata

    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = d.locate_file(rel)
    return path if path.exists() else None


@pytest.mark.slow
@pytest.mark.tflite
def test_a_real_model_onnx2tf_cannot_convert_goes_through_torch(tmp_path):
    """PP-OCR's text-direction classifier (MobileNetV3 from paddle2onnx, shipped in rapidocr-onnxruntime;
    weights as Constant nodes, dynamic height and width): onnx2tf fails on it in both layouts, and
    onnx -> torch -> tflite converts it, exactly."""
    from edgekit.core.data import random_dataset
    from edgekit.core.signature import TensorSpec
    from edgekit.backends.onnx.reference import OnnxReference

    path = _installed_file("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    if path is None:
        pytest.skip("rapidocr-onnxruntime (the corpus' PP-OCR models) is not installed")
    source = load_source(str(path), [TensorSpec("x", (1, 3, 48, 192), "float32")])
    data = random_dataset(source.inputs, n_calib=16, n_eval=32).check_against(source.inputs)
    ref = OnnxReference(source, LocalDevice)
    try:
        reference = ref.outputs(data.eval)
    finally:
        ref.close()
    target = get_target("tflite")
    result = convert(source, target, data, tmp_path / "out")
    m = result.manifest
    assert [s["edge"] for s in m["route"]] == ["TorchFromOnnx", "TfliteFromTorch"]
    failed = {f["edge"]: f["error"] for f in m["routes_failed"]}
    assert {"SavedModelFromOnnx", "SavedModelFromOnnxNhwc"} <= set(failed), failed
    assert all("onnx2tf failed" in failed[e] for e in ("SavedModelFromOnnx", "SavedModelFromOnnxNhwc")), failed
    rec = measure(result.artifact, target.runtime, data, reference, target.tolerance, bench=None)
    assert rec["parity"]["passed"], rec["parity"]["failures"]
    assert rec["parity"]["outputs"][0]["cosine_mean"] > 0.99999
