"""Node names TensorFlow refuses as name scopes ('Softmax@0', as paddle2onnx writes them) no longer stop
onnx2tf: the ONNX copy it reads gets valid, unique names (seen on the corpus's ppocr-cls)."""
from __future__ import annotations

import re

import numpy as np
import pytest

pytestmark = pytest.mark.tflite


def _model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="@fc"),
             helper.make_node("Softmax", ["h"], ["y"], name="Softmax@0", axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


def test_names_become_valid_scopes_and_stay_unique(tmp_path):
    from edgekit.backends.tflite.onnx2tf import scope_safe_names

    model = _model(tmp_path / "m.onnx")
    model.graph.node.append(model.graph.node[1])  # a second node that would map to the same name
    model.graph.node[2].name = "Softmax#0"
    assert scope_safe_names(model) == 3
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*", n) for n in names), names
    assert scope_safe_names(model) == 0  # valid names are left alone


def test_a_model_with_such_names_converts_to_tflite(tmp_path):
    from edgekit.core.convert import convert
    from edgekit.core.data import split_arrays
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    _model(tmp_path / "m.onnx")
    source = load_source(str(tmp_path / "m.onnx"))
    data = split_arrays("x", {"x": np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)})
    result = convert(source, get_target("tflite"), data.check_against(source.inputs), tmp_path / "out")
    notes = " ".join(n for s in result.manifest["route"] for n in s["notes"])
    assert "renamed to valid TensorFlow scope names" in notes
    assert result.manifest["proof"]["proven"]
