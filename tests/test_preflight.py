"""Pre-flight: a model's operators against the planned route and the target runtime, before
converting. Nothing here converts (onnx2tf and TensorFlow are never run or imported)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.preflight import format_preflight, inspect_model

pytestmark = [pytest.mark.onnx]

_ONNX2TF = importlib.util.find_spec("onnx2tf")
needs_onnx2tf = pytest.mark.skipif(_ONNX2TF is None, reason="onnx2tf is not installed (its ops folder is read)")
TFLITE_ROUTE = ["SavedModelFromOnnx", "TfliteFromSavedModel"]


def _model(path: Path, nodes, inputs, inits=(), opsets=(("", 17),), out_shape=(1, 4, 8)) -> str:
    """Save a small ONNX model: ``inputs`` are (name, TensorProto type, shape); output 'out'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W2")]
    weights += [numpy_helper.from_array(np.asarray(v), k) for k, v in inits]
    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(out_shape))], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _x():
    from onnx import TensorProto

    return [("x", TensorProto.FLOAT, [1, 4, 16])]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from onnx import TensorProto
    from onnx.helper import make_node as node

    d = tmp_path_factory.mktemp("preflight")
    rng = np.random.default_rng(1)
    emb = ("E", rng.standard_normal((100, 16)).astype(np.float32))
    ids = ("ids", TensorProto.INT64, [1, 4])
    return {
        "custom": _model(d / "custom.onnx", [node("MatMul", ["x", "W"], ["y"]),
                                             node("Frobnicate", ["y"], ["z"], domain="com.example"),
                                             node("MatMul", ["z", "W2"], ["out"])],
                         _x(), opsets=(("", 17), ("com.example", 1))),
        # the exact GELU's pieces: x * 0.5 * (1 + erf(x / sqrt 2))
        "erf": _model(d / "erf.onnx", [node("MatMul", ["x", "W"], ["y"]), node("Div", ["y", "sqrt2"], ["s"]),
                                       node("Erf", ["s"], ["e"]), node("Add", ["e", "one"], ["e1"]),
                                       node("Mul", ["y", "e1"], ["g"]), node("MatMul", ["g", "W2"], ["out"])],
                      _x(), [("sqrt2", np.float32(2 ** 0.5)), ("one", np.float32(1.0))]),
        # token ids into an embedding table: the ids are int64 model inputs
        "embedding": _model(d / "embedding.onnx", [node("Gather", ["E", "ids"], ["g"]),
                                                   node("MatMul", ["g", "W"], ["h"]),
                                                   node("MatMul", ["h", "W2"], ["out"])], [ids], [emb]),
        # ... and an int64 attention mask cast to float and multiplied in
        "masked": _model(d / "masked.onnx", [node("Gather", ["E", "ids"], ["g"]),
                                             node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT),
                                             node("Unsqueeze", ["mf", "axis"], ["m3"]),
                                             node("Mul", ["g", "m3"], ["gm"]),
                                             node("MatMul", ["gm", "W"], ["h"]),
                                             node("MatMul", ["h", "W2"], ["out"])],
                         [ids, ("mask", TensorProto.INT64, [1, 4])], [emb, ("axis", np.array([2], np.int64))]),
        "castlike": _model(d / "castlike.onnx", [node("MatMul", ["x", "W"], ["y"]),
                                                 node("CastLike", ["y", "x"], ["c"]),
                                                 node("MatMul", ["c", "W2"], ["out"])], _x()),
    }


def _row(result, op):
    return next(r for r in result["ops"] if r["op"] == op)


# ------------------------------------------------------------------ the digits CNN (torch)

@pytest.mark.parametrize("name, route", [
    pytest.param("tflite-int8", ["OnnxFromTorch", *TFLITE_ROUTE], marks=needs_onnx2tf),
    ("onnx-int8", ["OnnxFromTorch", "QuantizedOnnxFromOnnx"]),
])
def test_digits_cnn_will_convert(digits_source, name, route):
    r = inspect_model(digits_source, name)
    assert r["model"] == "digits_cnn" and r["target"] == name and r["route"] == route and r["inspected"]
    ops = {row["op"]: row for row in r["ops"]}
    assert {"Conv", "Relu", "MaxPool"} <= set(ops) and ({"Gemm", "MatMul"} & set(ops))
    assert ops["Conv"]["count"] == 3 and ops["MaxPool"]["count"] == 2
    assert all(row["status"] == "ok" and row["domain"] == "" for row in r["ops"]), r["ops"]
    assert r["summary"] == {"ok": len(r["ops"]), "float": 0, "fallback": 0, "fail": 0}
    assert r["verdict"] == "will convert"
    text = format_preflight(r)
    assert text.splitlines()[-1] == "verdict: will convert" and "Conv" in text and " -> ".join(route) in text


def test_digits_cnn_dynamic_int8_on_onnx_runtime_keeps_gemm_float(digits_source):
    """ORT's dynamic quantizer has ConvInteger but no Gemm: the classifier stays float."""
    r = inspect_model(digits_source, "onnx-int8-dynamic")
    assert _row(r, "Conv")["status"] == "ok"
    assert _row(r, "Gemm")["status"] == "float" and "does not quantize Gemm" in _row(r, "Gemm")["why"]
    assert _row(r, "Reshape")["status"] == "ok"  # moves data: nothing to quantize
    assert r["verdict"] == "will convert with float fallbacks"


# ------------------------------------------------------------------ hand-made ONNX models

@pytest.mark.parametrize("name", [pytest.param("tflite-int8", marks=needs_onnx2tf), "onnx-int8", "onnx"])
def test_custom_domain_operator_fails_by_name(models, name):
    r = inspect_model(models["custom"], name)
    row = _row(r, "Frobnicate")
    assert row["domain"] == "com.example" and row["status"] == "fail" and "custom domain" in row["why"]
    assert _row(r, "MatMul")["status"] == "ok"
    assert r["summary"]["fail"] == 1
    assert r["verdict"].startswith("will fail: com.example::Frobnicate")
    lines = format_preflight(r).splitlines()
    assert lines[2].split()[:3] == ["com.example::Frobnicate", "1", "fail"]  # failing ops first, under the header
    assert lines[-1].startswith("verdict: will fail")


@needs_onnx2tf
def test_erf_uses_onnx2tf_pseudo_op_and_cannot_be_full_integer(models):
    r = inspect_model(models["erf"], "tflite")
    assert r["route"] == TFLITE_ROUTE
    assert _row(r, "Erf")["status"] == "ok" and "pseudo op" in _row(r, "Erf")["why"]
    assert r["verdict"] == "will convert"

    r = inspect_model(models["erf"], "tflite-int8")
    erf = _row(r, "Erf")
    assert erf["status"] == "fallback" and "-rtpo Erf" in erf["why"] and "no int8 kernel" in erf["why"]
    assert _row(r, "Div")["status"] == "ok" and _row(r, "MatMul")["status"] == "ok"
    assert r["verdict"].startswith("will fail: not full integer: Erf")
    assert format_preflight(r).splitlines()[2].split()[:3] == ["Erf", "1", "fallback"]


def test_erf_stays_float_under_onnx_runtime_static_int8(models):
    r = inspect_model(models["erf"], "onnx-int8")
    assert _row(r, "Erf")["status"] == "float" and "does not quantize Erf" in _row(r, "Erf")["why"]
    assert _row(r, "MatMul")["status"] == "ok"
    assert r["verdict"] == "will convert with float fallbacks"


@needs_onnx2tf
@pytest.mark.parametrize("name", ["tflite-int8", "tflite-int8-io"])
def test_int64_token_ids_as_gather_indices_stay_integer(models, name):
    """Measured: an int64-ids embedding converts to full integer (the ids are not quantized)."""
    r = inspect_model(models["embedding"], name)
    assert all(row["status"] == "ok" for row in r["ops"]), r["ops"]
    assert r["verdict"] == "will convert"
    assert any("ids (int64)" in n and "not quantized" in n for n in r["notes"])


@needs_onnx2tf
def test_int64_mask_cast_to_float_falls_back_on_full_integer_tflite(models):
    """Measured: 'the model is not full integer: CAST run in float'."""
    r = inspect_model(models["masked"], "tflite-int8")
    cast = _row(r, "Cast")
    assert cast["status"] == "fallback" and "casts integer input mask (int64) to float" in cast["why"]
    assert _row(r, "Gather")["status"] == "ok"
    assert r["verdict"].startswith("will fail: not full integer: Cast")
    # ONNX Runtime's static int8 quantizes around the cast: no problem there
    assert inspect_model(models["masked"], "onnx-int8")["verdict"] == "will convert"


@needs_onnx2tf
def test_operator_onnx2tf_has_no_converter_for_fails(models):
    if (Path(_ONNX2TF.origin).parent / "ops" / "CastLike.py").exists():
        pytest.skip("this onnx2tf converts CastLike")
    r = inspect_model(models["castlike"], "tflite")
    assert _row(r, "CastLike")["status"] == "fail" and "onnx2tf/ops/CastLike.py" in _row(r, "CastLike")["why"]
    assert r["verdict"].startswith("will fail: CastLike")
    assert inspect_model(models["castlike"], "onnx")["verdict"] == "will convert"


def test_no_route_and_uninspected_sources_say_so(models):
    from edgekit.core.sources import Source

    keras = Source("m.keras", "keras", "m", "0" * 64, [], ["out"], Path("m.keras"))
    r = inspect_model(keras, "tflite")
    assert r["route"] == ["TfliteFromKeras"] and not r["inspected"] and r["verdict"].startswith("not inspected")
    r = inspect_model(keras, "onnx")
    assert r["route"] == [] and r["verdict"].startswith("will fail: no converter path")
    assert format_preflight(r).splitlines()[-1].startswith("verdict: will fail")
